//! A DPoP authorization server and resource server (RFC 9449) for the tests. Both check
//! every proof with the independent verifier in `jose`, write down what they saw and
//! every problem they found, and ask for a nonce when told to.

use super::jose::{self, ath, thumbprint, verify_with_embedded_jwk};
use super::{body, TestBody};
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a fake saw of one proof.
#[derive(Clone, Debug)]
pub struct Proof {
    pub header: Value,
    pub claims: Value,
}

#[derive(Default)]
struct Checks {
    requests: AtomicUsize,
    jtis: Mutex<HashSet<String>>,
    proofs: Mutex<Vec<Proof>>,
    problems: Mutex<Vec<String>>,
    /// The nonce the server wants; `None`: no nonce needed.
    nonce: Mutex<Option<String>>,
}

impl Checks {
    /// Checks the request's proof as RFC 9449 §4.3 says; the proof, or the problem.
    fn proof(&self, headers: &HeaderMap, htm: &str, htu: &str) -> Result<Proof, String> {
        let all: Vec<_> = headers.get_all("dpop").iter().collect();
        let [value] = all[..] else {
            return Err(format!("{} DPoP headers", all.len()));
        };
        let (header, claims) = verify_with_embedded_jwk(value.to_str().unwrap_or(""))?;
        let proof = Proof { header, claims };
        let c = &proof.claims;
        if proof.header["typ"] != "dpop+jwt" {
            return Err(format!("typ is {}", proof.header["typ"]));
        }
        if c["htm"] != htm {
            return Err(format!("htm {} for {htm}", c["htm"]));
        }
        if c["htu"] != htu {
            return Err(format!("htu {} for {htu}", c["htu"]));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let iat = c["iat"].as_i64().ok_or("no iat")?;
        if (now - iat).abs() > 60 {
            return Err(format!("iat {iat} is {}s off", now - iat));
        }
        let jti = c["jti"].as_str().ok_or("no jti")?.to_string();
        if jti.len() < 12 {
            return Err("a short jti".into());
        }
        if !self.jtis.lock().unwrap().insert(jti) {
            return Err("a reused jti".into());
        }
        self.proofs.lock().unwrap().push(proof.clone());
        Ok(proof)
    }

    /// True when the proof carries the nonce the server wants (or none is wanted).
    fn nonce_ok(&self, proof: &Proof) -> bool {
        match &*self.nonce.lock().unwrap() {
            None => true,
            Some(n) => proof.claims["nonce"] == n.as_str(),
        }
    }

    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }
}

fn reply(status: u16, headers: &[(&str, String)], text: String) -> Response<TestBody> {
    let mut resp = Response::new(body(text));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        resp.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

/// A token endpoint that takes only DPoP token requests.
#[derive(Clone)]
pub struct DpopIdp {
    pub addr: SocketAddr,
    checks: Arc<Checks>,
    issued: Arc<Mutex<Vec<String>>>,
    bearer_issued: Arc<Mutex<Vec<String>>>,
}

/// How the fake IdP behaves.
#[derive(Clone)]
pub struct IdpOptions {
    /// Ask for this nonce (`use_dpop_nonce`) until a proof carries it.
    pub nonce: Option<&'static str>,
    /// With every token, hand out this nonce for the next request.
    pub next_nonce: Option<&'static str>,
    /// The `token_type` of the answers.
    pub token_type: &'static str,
    /// A token request without a proof gets a plain Bearer token (listed apart, in
    /// [`DpopIdp::bearer_issued`]) instead of a refusal: an IdP serving both kinds of
    /// client.
    pub bearer_without_proof: bool,
}

impl Default for IdpOptions {
    fn default() -> Self {
        Self {
            nonce: None,
            next_nonce: None,
            token_type: "DPoP",
            bearer_without_proof: false,
        }
    }
}

impl DpopIdp {
    pub async fn start(opts: IdpOptions) -> DpopIdp {
        let checks = Arc::new(Checks::default());
        *checks.nonce.lock().unwrap() = opts.nonce.map(str::to_string);
        let issued = Arc::new(Mutex::new(Vec::new()));
        let bearer_issued = Arc::new(Mutex::new(Vec::new()));
        let port = Arc::new(Mutex::new(0u16));
        let (c, i, p, b) = (
            checks.clone(),
            issued.clone(),
            port.clone(),
            bearer_issued.clone(),
        );
        let addr = super::serve(move |req: Request<Incoming>| {
            let (checks, issued, port, opts) = (c.clone(), i.clone(), p.clone(), opts.clone());
            let bearer_issued = b.clone();
            async move {
                checks.requests.fetch_add(1, Ordering::SeqCst);
                if opts.bearer_without_proof && !req.headers().contains_key("dpop") {
                    let _ = req.into_body().collect().await;
                    let token = format!("plain-bearer-{}", fastrand::u64(..));
                    bearer_issued.lock().unwrap().push(token.clone());
                    let answer = json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
                    return reply(200, &[], answer.to_string());
                }
                let htu = format!("http://127.0.0.1:{}/token", *port.lock().unwrap());
                let proof = match checks.proof(req.headers(), "POST", &htu) {
                    Ok(p) => p,
                    Err(e) => {
                        checks.problem(format!("idp: {e}"));
                        return reply(400, &[], json!({"error": "invalid_dpop_proof"}).to_string());
                    }
                };
                if proof.claims.get("ath").is_some() {
                    checks.problem("idp: a token request proof with ath".into());
                }
                let _ = req.into_body().collect().await;
                if !checks.nonce_ok(&proof) {
                    let n = checks.nonce.lock().unwrap().clone().unwrap();
                    return reply(
                        400,
                        &[("dpop-nonce", n)],
                        json!({"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"}).to_string(),
                    );
                }
                let jkt = thumbprint(&proof.header["jwk"]).unwrap();
                let n = issued.lock().unwrap().len();
                let claims = json!({"cnf": {"jkt": jkt}, "n": n, "r": fastrand::u64(..)});
                let token = format!("eyJhbGciOiJub25lIn0.{}.", jose::b64(claims.to_string().as_bytes()));
                issued.lock().unwrap().push(token.clone());
                let mut headers = vec![("cache-control", "no-store".to_string())];
                if let Some(next) = opts.next_nonce {
                    *checks.nonce.lock().unwrap() = Some(next.to_string());
                    headers.push(("dpop-nonce", next.to_string()));
                }
                let answer = json!({"access_token": token, "token_type": opts.token_type, "expires_in": 3600});
                reply(200, &headers, answer.to_string())
            }
        })
        .await;
        *port.lock().unwrap() = addr.port();
        DpopIdp {
            addr,
            checks,
            issued,
            bearer_issued,
        }
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.addr.port())
    }

    pub fn requests(&self) -> usize {
        self.checks.requests.load(Ordering::SeqCst)
    }

    /// The DPoP-bound tokens issued, in order.
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }

    /// The Bearer tokens issued to requests without a proof (`bearer_without_proof`).
    pub fn bearer_issued(&self) -> Vec<String> {
        self.bearer_issued.lock().unwrap().clone()
    }

    /// Every proof that passed the checks, in order.
    pub fn proofs(&self) -> Vec<Proof> {
        self.checks.proofs.lock().unwrap().clone()
    }

    pub fn problems(&self) -> Vec<String> {
        self.checks.problems.lock().unwrap().clone()
    }
}

/// A resource server that takes only DPoP-bound tokens with valid proofs, and (when
/// told) asks once for a nonce.
#[derive(Clone)]
pub struct DpopApi {
    pub addr: SocketAddr,
    checks: Arc<Checks>,
    /// (Authorization, status) of every request.
    seen: Arc<Mutex<Vec<(String, u16)>>>,
}

impl DpopApi {
    /// `nonce`: the nonce the API asks for (with a 401 `use_dpop_nonce`) until a proof
    /// carries it.
    pub async fn start(nonce: Option<&'static str>) -> DpopApi {
        let checks = Arc::new(Checks::default());
        *checks.nonce.lock().unwrap() = nonce.map(str::to_string);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let port = Arc::new(Mutex::new(0u16));
        let (c, s, p) = (checks.clone(), seen.clone(), port.clone());
        let addr = super::serve(move |req: Request<Incoming>| {
            let (checks, seen, port) = (c.clone(), s.clone(), p.clone());
            async move {
                checks.requests.fetch_add(1, Ordering::SeqCst);
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                // As a resource server does (RFC 9449 §4.3 check 9): the URI it received,
                // with the Host it received.
                let port = *port.lock().unwrap();
                let host = req.headers().get("host").and_then(|h| h.to_str().ok());
                let host = host.map_or(format!("127.0.0.1:{port}"), str::to_string);
                let htu = format!("http://{host}{}", req.uri().path());
                let (status, headers, text) = match check(&checks, &req, &auth, &htu) {
                    Ok(()) => (200, vec![], "dpop ok".to_string()),
                    Err(Refusal::Nonce(n)) => (
                        401,
                        vec![
                            ("www-authenticate", r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#.to_string()),
                            ("dpop-nonce", n),
                        ],
                        "nonce please".to_string(),
                    ),
                    Err(Refusal::Invalid(e)) => {
                        checks.problem(format!("api: {e}"));
                        (401, vec![("www-authenticate", r#"DPoP error="invalid_dpop_proof""#.to_string())], e)
                    }
                };
                let _ = req.into_body().collect().await;
                seen.lock().unwrap().push((auth, status));
                reply(status, &headers, text)
            }
        })
        .await;
        *port.lock().unwrap() = addr.port();
        DpopApi { addr, checks, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn proofs(&self) -> Vec<Proof> {
        self.checks.proofs.lock().unwrap().clone()
    }

    pub fn problems(&self) -> Vec<String> {
        self.checks.problems.lock().unwrap().clone()
    }

    /// (Authorization, status) of every request, in order.
    pub fn seen(&self) -> Vec<(String, u16)> {
        self.seen.lock().unwrap().clone()
    }
}

enum Refusal {
    Nonce(String),
    Invalid(String),
}

/// RFC 9449 §7.1: `Authorization: DPoP`, a valid proof for this request with the hash
/// of this token, from the key the token is bound to, with the nonce we asked for.
fn check(checks: &Checks, req: &Request<Incoming>, auth: &str, htu: &str) -> Result<(), Refusal> {
    let token = auth
        .strip_prefix("DPoP ")
        .ok_or_else(|| Refusal::Invalid(format!("Authorization is not DPoP: {auth:.12}")))?;
    let proof = checks
        .proof(req.headers(), req.method().as_str(), htu)
        .map_err(Refusal::Invalid)?;
    if proof.claims["ath"] != ath(token).as_str() {
        return Err(Refusal::Invalid("ath is not the token's hash".into()));
    }
    let jkt = thumbprint(&proof.header["jwk"]).map_err(Refusal::Invalid)?;
    let bound = jose::token_claims(token).map(|c| c["cnf"]["jkt"].clone());
    if bound != Some(Value::String(jkt)) {
        return Err(Refusal::Invalid("the token is bound to another key".into()));
    }
    if !checks.nonce_ok(&proof) {
        return Err(Refusal::Nonce(
            checks.nonce.lock().unwrap().clone().unwrap(),
        ));
    }
    Ok(())
}
