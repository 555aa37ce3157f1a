//! The few DER structures we read ourselves, strictly: a tag, a definite
//! minimal length, content inside the input. OpenSSL has already decoded
//! what we read here; these readers see what its accessors hide (a BIT
//! STRING's unused bits) or spare a round trip through its encoders.

/// One element: its tag and content, and what follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element<'a> {
    pub tag: u8,
    pub content: &'a [u8],
}

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;

/// Reads the element at the start of `input`; `None` for anything that is
/// not DER (long-form tags, indefinite or non-minimal lengths, content past
/// the end).
pub fn read(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // Multi-byte tags never occur in the structures we read.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        // 0x80 is BER's indefinite length; more than 4 octets is never a CSR.
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (octets, rest) = rest.split_at(n);
        // Minimal: no leading zero octet, and no long form under 128.
        if octets[0] == 0 {
            return None;
        }
        let len = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return None;
        }
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((Element { tag, content }, rest))
}

/// Reads an element of tag `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (e, rest) = read(input)?;
    (e.tag == tag).then_some((e.content, rest))
}

/// Reads exactly one element of tag `tag` and nothing after it.
pub fn only(input: &[u8], tag: u8) -> Option<&[u8]> {
    let (content, rest) = expect(input, tag)?;
    rest.is_empty().then_some(content)
}

/// The SubjectPublicKeyInfo element (header included) inside a
/// CertificationRequest (RFC 2986: SEQUENCE { info SEQUENCE { version,
/// subject, subjectPKInfo, attributes }, algorithm, signature }).
pub fn csr_spki(csr: &[u8]) -> Option<&[u8]> {
    let (request, _) = expect(csr, SEQUENCE)?;
    let (info, _) = expect(request, SEQUENCE)?;
    let (_, after_version) = expect(info, INTEGER)?;
    let (_, after_subject) = expect(after_version, SEQUENCE)?;
    let (_, after_spki) = expect(after_subject, SEQUENCE)?;
    Some(&after_subject[..after_subject.len() - after_spki.len()])
}

pub const OID: u8 = 0x06;

/// A SubjectPublicKeyInfo (RFC 5280: SEQUENCE { algorithm SEQUENCE { OID,
/// parameters OPTIONAL }, subjectPublicKey BIT STRING }) as it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spki<'a> {
    /// The algorithm OID's content octets.
    pub algorithm: &'a [u8],
    pub params: Option<Element<'a>>,
    /// The BIT STRING's unused-bits octet.
    pub unused_bits: u8,
    pub key: &'a [u8],
}

pub fn spki_parts(spki: &[u8]) -> Option<Spki<'_>> {
    let body = only(spki, SEQUENCE)?;
    let (algorithm, after_algorithm) = expect(body, SEQUENCE)?;
    let (oid, after_oid) = expect(algorithm, OID)?;
    let params = match read(after_oid) {
        None if after_oid.is_empty() => None,
        Some((e, [])) => Some(e),
        _ => return None,
    };
    let bits = only(after_algorithm, BIT_STRING)?;
    let (&unused_bits, key) = bits.split_first()?;
    Some(Spki {
        algorithm: oid,
        params,
        unused_bits,
        key,
    })
}

/// An OID's content octets in dotted form (`1.3.101.112`); `None` when
/// they are not a well-formed OID.
pub fn dotted_oid(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        // A leading 0x80 would be a non-minimal arc.
        if value == 0 && b == 0x80 {
            return None;
        }
        value = value.checked_mul(128)?.checked_add(u64::from(b & 0x7f))?;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == oid.len() {
            return None;
        }
    }
    let text: Vec<String> = arcs.iter().map(u64::to_string).collect();
    (!text.is_empty()).then(|| text.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input and the (tag, content) read from it, if any.
    type Case<'a> = (&'a [u8], Option<(u8, &'a [u8])>);

    #[test]
    fn lengths_are_strict() {
        let cases: [Case<'_>; 9] = [
            (&[0x04, 0x01, 0xaa], Some((0x04, &[0xaa]))),
            (&[0x04, 0x00], Some((0x04, &[]))),
            // Indefinite length, a zero octet first, long form below 128,
            // more octets than the input has, more than four length octets.
            (&[0x04, 0x80, 0xaa, 0, 0], None),
            (&[0x04, 0x82, 0x00, 0x81], None),
            (&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5], None),
            (&[0x04, 0x02, 0xaa], None),
            (&[0x04, 0x85, 1, 0, 0, 0, 0], None),
            (&[0x1f, 0x01, 0x00], None),
            (&[0x04], None),
        ];
        for (input, want) in cases {
            let got = read(input).map(|(e, _)| (e.tag, e.content));
            assert_eq!(got, want, "{input:02x?}");
        }
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 128]);
        assert_eq!(
            read(&long).map(|(e, r)| (e.content.len(), r.len())),
            Some((128, 0))
        );
    }

    #[test]
    fn spki_parts_and_their_unused_bits() {
        // Ed25519: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING 00 || 32 octets }
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend([9u8; 32]);
        let parts = spki_parts(&spki).unwrap();
        assert_eq!(parts.algorithm, &[0x2b, 0x65, 0x70]);
        assert_eq!(
            (parts.params, parts.unused_bits, parts.key),
            (None, 0, &[9u8; 32][..])
        );
        spki[11] = 3;
        assert_eq!(spki_parts(&spki).map(|p| p.unused_bits), Some(3));
        // An empty BIT STRING has no unused-bits octet: not a key at all.
        let empty = [
            0x30, 0x09, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x00,
        ];
        assert_eq!(spki_parts(&empty), None);
        // Trailing bytes inside the SEQUENCE are refused.
        let trailing = [
            0x30, 0x0b, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x01, 0x00, 0x00,
        ];
        assert_eq!(spki_parts(&trailing), None);
        // RSA: NULL parameters are one element; two are refused.
        let rsa = [
            0x30, 0x13, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1, 0x05,
            0x00, 0x03, 0x02, 0x00, 0x30,
        ];
        assert_eq!(
            spki_parts(&rsa).unwrap().params,
            Some(Element {
                tag: 0x05,
                content: &[]
            })
        );
        let two = [
            0x30, 0x15, 0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1, 0x05,
            0x00, 0x05, 0x00, 0x03, 0x02, 0x00, 0x30,
        ];
        assert_eq!(spki_parts(&two), None);
    }

    #[test]
    fn oids_in_dotted_form() {
        assert_eq!(
            dotted_oid(&[0x2b, 0x65, 0x70]).as_deref(),
            Some("1.3.101.112")
        );
        let ec = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        assert_eq!(dotted_oid(&ec).as_deref(), Some("1.2.840.10045.2.1"));
        assert_eq!(dotted_oid(&[0x88, 0x37]).as_deref(), Some("2.999"));
        assert_eq!(dotted_oid(&[]), None);
        assert_eq!(dotted_oid(&[0x2b, 0x86]), None, "cut off");
        assert_eq!(dotted_oid(&[0x2b, 0x80, 0x01]), None, "non-minimal");
        assert_eq!(dotted_oid(&[0xff; 20]), None, "overflow");
    }
}
