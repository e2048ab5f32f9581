//! The little DER the key loaders need: re-wrapping keys into the forms ring reads.

/// A P-256 SEC1 `ECPrivateKey` (RFC 5915) inside a PKCS#8 `PrivateKeyInfo` (RFC 5208):
/// `SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, prime256v1 }, OCTET STRING sec1 }`.
pub(super) fn p256_sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    const ALGORITHM: &[u8] = &[
        0x30, 0x13, // SEQUENCE
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // 1.2.840.10045.2.1
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // 1.2.840.10045.3.1.7
    ];
    let mut body = vec![0x02, 0x01, 0x00]; // INTEGER 0
    body.extend_from_slice(ALGORITHM);
    body.push(0x04); // OCTET STRING
    der_length(&mut body, sec1.len());
    body.extend_from_slice(sec1);
    let mut out = vec![0x30]; // SEQUENCE
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` whose algorithm is
/// id-RSASSA-PSS (1.2.840.113549.1.1.10), which ring does not read itself; `None` for any
/// other key (ring then reads the PKCS#8 as it is, and says whether it fits).
pub(super) fn rsa_pss_pkcs8_inner(pkcs8: &[u8]) -> Option<&[u8]> {
    const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    let (info, _) = element(pkcs8, 0x30)?;
    let (_version, rest) = element(info, 0x02)?;
    let (algorithm, rest) = element(rest, 0x30)?;
    let (oid, _) = element(algorithm, 0x06)?;
    if oid != RSASSA_PSS {
        return None;
    }
    let (key, _) = element(rest, 0x04)?;
    Some(key)
}

/// The content of the DER element at the start of `input` if its tag is `tag`, and what
/// follows it. Definite lengths of up to four bytes.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    if t != tag {
        return None;
    }
    let len = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let (bytes, after) = (rest.get(..n)?, rest.get(n..)?);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        }
        _ => return None,
    };
    Some((rest.get(..len)?, rest.get(len..)?))
}
