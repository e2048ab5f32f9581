//! `egress_proxy` and `no_proxy` (SPEC §11), at the top level, per provider and per
//! route. The most specific setting wins, key by key: a route's own value, else its
//! provider's, else the top level's. A `no_proxy` list replaces the inherited one (it
//! does not add to it), so `no_proxy: []` on a route clears a provider's list.
//! `egress_proxy: ""` (say, from `${CORP_PROXY:-}`) means "no proxy" at that level.
//!
//! The proxy URL may hold credentials: no message here quotes it.

use super::{Arc, Cx, Text, YamlPath};
use crate::outbound::{Egress, NoProxy, ProxyEndpoint};

/// What one level writes, before inheritance.
#[derive(Default)]
pub(super) struct Layer {
    /// `Some(None)`: `egress_proxy: ""`, explicitly no proxy.
    proxy: Option<Option<Arc<ProxyEndpoint>>>,
    no_proxy: Option<Arc<NoProxy>>,
}

impl Layer {
    /// `outer` with this level's own settings in place of the inherited ones.
    pub(super) fn over(self, outer: &Egress) -> Egress {
        Egress::new(
            self.proxy.unwrap_or_else(|| outer.proxy().cloned()),
            self.no_proxy.unwrap_or_else(|| outer.no_proxy().clone()),
        )
    }
}

impl Cx<'_> {
    /// The `egress_proxy` and `no_proxy` of the block at `path`, checked.
    pub(super) fn outbound(
        &mut self,
        path: &YamlPath,
        egress_proxy: &Option<Text>,
        no_proxy: &Option<Vec<Text>>,
    ) -> Layer {
        let proxy_path = path.key("egress_proxy");
        let proxy = self
            .text(&proxy_path, egress_proxy)
            .and_then(|url| match url.trim() {
                "" => Some(None),
                url => match ProxyEndpoint::parse(url) {
                    Ok(p) => Some(Some(Arc::new(p))),
                    Err(e) => {
                        self.problem(&proxy_path, format!("invalid egress_proxy: {e}"));
                        None
                    }
                },
            });
        let no_proxy = no_proxy.as_ref().and_then(|list| {
            let list_path = path.key("no_proxy");
            let before = self.problems.len();
            let entries: Vec<String> = list
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    self.text(&list_path.index(i), &Some(t.clone()))
                        .unwrap_or_default()
                })
                .collect();
            match NoProxy::parse(&entries) {
                Ok(np) if self.problems.len() == before => Some(Arc::new(np)),
                Ok(_) => None,
                Err(errors) => {
                    for (i, e) in errors {
                        self.problem(&list_path.index(i), format!("invalid no_proxy entry: {e}"));
                    }
                    None
                }
            }
        });
        Layer { proxy, no_proxy }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn compile(yaml: &str) -> Result<Config, Vec<String>> {
        Config::from_text(Path::new("t.yaml"), yaml, &|name| {
            (name == "CORP").then(|| "http://u:fromenv@env-proxy.example:8080".to_string())
        })
        .map_err(|e| e.problems)
    }

    const PROVIDERS: &str = "providers:\n  a:\n    token_url: https://idp.example/token\n    client_id: c\n    client_secret: s\n  b:\n    token_url: https://idp.example/token\n    client_id: c\n    client_secret: s\n    egress_proxy: http://b-proxy.example:3128\n    no_proxy: [.b.example]\n";

    fn proxy_of(e: &crate::outbound::Egress) -> Option<String> {
        e.proxy().map(|p| p.authority().to_string())
    }

    #[test]
    fn route_over_provider_over_top_level_key_by_key() {
        let yaml = format!("egress_proxy: http://user:pw@top-proxy.example:3128\nno_proxy: [.top.example, 10.0.0.0/8]\n{PROVIDERS}routes:\n  - {{ name: ra, match: {{ host: a.example }}, provider: a }}\n  - {{ name: rb, match: {{ host: b.example }}, provider: b }}\n  - {{ name: rc, match: {{ host: c.example }}, provider: b, egress_proxy: http://c-proxy.example:1 }}\n  - {{ name: rd, match: {{ host: d.example }}, provider: b, no_proxy: [] }}\n  - {{ name: re, match: {{ host: e.example }}, provider: a, egress_proxy: '' }}\n");
        let c = compile(&yaml).unwrap();
        assert_eq!(
            proxy_of(&c.egress).as_deref(),
            Some("top-proxy.example:3128")
        );
        let (a, b) = (c.provider("a").unwrap(), c.provider("b").unwrap());
        assert_eq!(
            proxy_of(&a.egress).as_deref(),
            Some("top-proxy.example:3128")
        );
        assert!(a.egress.no_proxy().matches("x.top.example"));
        assert_eq!(
            a.origin.oauth().unwrap().egress,
            a.egress,
            "the IdP client's egress"
        );
        assert_eq!(proxy_of(&b.egress).as_deref(), Some("b-proxy.example:3128"));
        assert!(b.egress.no_proxy().matches("x.b.example"));
        assert!(
            !b.egress.no_proxy().matches("x.top.example"),
            "a list replaces, not adds"
        );
        let route = |n: &str| {
            c.routes
                .iter()
                .find(|r| r.name == n)
                .unwrap()
                .egress
                .clone()
        };
        assert_eq!(route("ra"), a.egress);
        assert_eq!(route("rb"), b.egress);
        assert_eq!(proxy_of(&route("rc")).as_deref(), Some("c-proxy.example:1"));
        assert!(
            route("rc").no_proxy().matches("x.b.example"),
            "no_proxy still the provider's"
        );
        assert_eq!(
            proxy_of(&route("rd")).as_deref(),
            Some("b-proxy.example:3128")
        );
        assert!(route("rd").no_proxy().is_empty());
        assert!(route("re").proxy().is_none());
    }

    #[test]
    fn no_setting_means_direct_and_a_changed_proxy_changes_the_token_key() {
        let plain = compile(PROVIDERS).unwrap();
        assert!(plain.egress.proxy().is_none());
        assert!(plain.provider("a").unwrap().egress.proxy().is_none());
        let with = compile(&format!("egress_proxy: ${{CORP}}\n{PROVIDERS}")).unwrap();
        let other = compile(&format!(
            "egress_proxy: http://u:other@env-proxy.example:8080\n{PROVIDERS}"
        ))
        .unwrap();
        let key = |c: &Config| c.provider("a").unwrap().key.clone();
        assert_ne!(key(&plain), key(&with));
        assert_ne!(key(&with), key(&other), "new credentials: a new IdP client");
        assert_eq!(
            key(&plain),
            key(&compile(PROVIDERS).unwrap()),
            "unchanged: same key"
        );
        assert!(!format!("{:?}", with.provider("a").unwrap().key).contains("fromenv"));
        // The key holds the decision for the token URL, not the whole list: an unrelated
        // no_proxy edit fetches no new token; listing the IdP makes it direct.
        let listing = |list: &str| {
            compile(&format!(
                "egress_proxy: ${{CORP}}\nno_proxy: [{list}]\n{PROVIDERS}"
            ))
            .unwrap()
        };
        assert_eq!(key(&listing(".unrelated.example, 10.0.0.0/8")), key(&with));
        assert_eq!(key(&listing("idp.example")), key(&plain));
    }

    /// SPEC §3: an http:// token_url only for loopback hosts, or with allow_http. Through
    /// a proxy elsewhere, the secret would cross the network in cleartext on the way.
    #[test]
    fn a_loopback_http_token_url_through_a_remote_proxy_needs_allow_http() {
        let provider = |name: &str, extra: &str| {
            format!("  {name}:\n    token_url: http://127.0.0.1:9/token\n    client_id: c\n    client_secret: s\n{extra}")
        };
        let yaml = format!(
            "egress_proxy: http://u:hunter2@proxy.corp.example:3128\nproviders:\n{}{}{}{}",
            provider("through", ""),
            provider("listed", "    no_proxy: ['127.0.0.0/8']\n"),
            provider("local", "    egress_proxy: http://localhost:3128\n"),
            provider("allowed", "    allow_http: true\n"),
        );
        let problems = compile(&yaml).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("t.yaml:4:16: providers.through.token_url: plain http:// to 127.0.0.1 goes through the egress proxy proxy.corp.example:3128")
                && problems[0].contains("list 127.0.0.1 in no_proxy")
                && !problems[0].contains("hunter2"),
            "{}",
            problems[0]
        );
        let yaml = yaml.replace("proxy.corp.example", "127.0.0.1");
        assert!(compile(&yaml).is_ok(), "a proxy on loopback keeps it local");
    }

    #[test]
    fn bad_values_are_located_and_never_quote_the_url() {
        let yaml = format!("egress_proxy: https://user:hunter2@p.example:3128\nno_proxy: [ok.example, 10.0.0.0/40, 'host:80']\n{PROVIDERS}routes:\n  - {{ match: {{ host: x.example }}, provider: a, egress_proxy: 'http://user:hunter2@p.example' }}\n");
        let problems = compile(&yaml).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0]
                .starts_with("t.yaml:1:15: egress_proxy: invalid egress_proxy: an https:// proxy"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1]
                .starts_with("t.yaml:2:24: no_proxy[1]: invalid no_proxy entry: \"10.0.0.0/40\""),
            "{}",
            problems[1]
        );
        assert!(
            problems[2].starts_with("t.yaml:2:37: no_proxy[2]:")
                && problems[2].contains("not ports"),
            "{}",
            problems[2]
        );
        assert!(
            problems[3].contains("routes[0].egress_proxy: invalid egress_proxy:")
                && problems[3].contains("port is missing"),
            "{}",
            problems[3]
        );
        assert!(
            problems.iter().all(|p| !p.contains("hunter2")),
            "{problems:#?}"
        );
    }
}
