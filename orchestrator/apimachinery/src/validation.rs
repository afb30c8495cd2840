//! Kubernetes' rules for object names, label keys, label values and annotation keys.
//!
//! Every check returns `Ok(())` or an `Err` holding a human-readable message. The messages are
//! modelled on the ones the Kubernetes API server returns (including the example values and the
//! regular expression it quotes), so that clients and users see familiar text. When a value
//! breaks several rules at once, all the messages are returned, joined with `"; "`.
//!
//! The checks are written by hand instead of with regular expressions: the grammars are tiny,
//! and the crate deliberately depends on nothing but `serde_json` and `thiserror`.

/// The longest allowed RFC 1123 label (a DNS name component).
const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// The longest allowed RFC 1123 subdomain (a full DNS name).
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// The longest allowed name part of a qualified name (the text after the optional `prefix/`).
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// The longest allowed label value.
const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case \
     alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";

const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower \
     case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
     character";
const DNS1123_SUBDOMAIN_FORMAT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FORMAT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of \
     alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
     character";
const LABEL_VALUE_FORMAT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

/// The characters Kubernetes uses for `metadata.generateName` suffixes. Vowels and the digits
/// 0, 1 and 3 are left out so that generated names never spell words or look ambiguous.
const NAME_SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// How many characters a generated name suffix has.
const NAME_SUFFIX_LENGTH: usize = 5;

/// Checks that `s` is a lowercase RFC 1123 subdomain of at most 253 characters, the rule for
/// most object names (for example ConfigMaps, Deployments and Pods).
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    let mut errors = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_length_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !is_dns1123_subdomain_text(s) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_MESSAGE,
            DNS1123_SUBDOMAIN_FORMAT,
            &["example.com"],
        ));
    }
    finish(errors)
}

/// Checks that `s` is a lowercase RFC 1123 label of at most 63 characters, the rule for
/// Namespace and Service names.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    let mut errors = Vec::new();
    if s.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_length_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_dns1123_label_text(s) {
        errors.push(regex_error(
            DNS1123_LABEL_MESSAGE,
            DNS1123_LABEL_FORMAT,
            &["my-name", "123-abc"],
        ));
    }
    finish(errors)
}

/// Checks that `s` is a valid label key: an optional DNS-subdomain prefix followed by `/`, then
/// a name part of at most 63 characters from `[A-Za-z0-9-_.]` that starts and ends with an
/// alphanumeric character.
pub fn label_key(s: &str) -> Result<(), String> {
    // Kubernetes validates label keys with exactly the qualified-name rule.
    qualified_name(s)
}

/// Checks that `s` is a valid label value: empty, or at most 63 characters from
/// `[A-Za-z0-9-_.]` starting and ending with an alphanumeric character.
pub fn label_value(s: &str) -> Result<(), String> {
    let mut errors = Vec::new();
    if s.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_length_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !s.is_empty() && !is_qualified_name_text(s) {
        errors.push(regex_error(
            LABEL_VALUE_MESSAGE,
            LABEL_VALUE_FORMAT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    finish(errors)
}

/// Checks that `s` is a qualified name, the rule for annotation keys (and label keys): an
/// optional DNS-subdomain prefix and `/`, then a name part of at most 63 characters.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('/').collect();
    let mut errors = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else if let Err(message) = dns1123_subdomain(prefix) {
                errors.push(format!("prefix part {message}"));
            }
            *name
        }
        _ => {
            // More than one '/' cannot be split into prefix and name, so there is nothing more
            // specific to say than what the whole value should look like.
            let shape = regex_error(
                QUALIFIED_NAME_MESSAGE,
                QUALIFIED_NAME_FORMAT,
                &["MyName", "my.name", "123-abc"],
            );
            return Err(format!(
                "a qualified name {shape} with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')"
            ));
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_length_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !is_qualified_name_text(name) {
        let shape = regex_error(
            QUALIFIED_NAME_MESSAGE,
            QUALIFIED_NAME_FORMAT,
            &["MyName", "my.name", "123-abc"],
        );
        errors.push(format!("name part {shape}"));
    }
    finish(errors)
}

/// Produces the 5-character suffix Kubernetes appends to `metadata.generateName`, drawn from
/// the alphabet `bcdfghjklmnpqrstvwxz2456789`.
///
/// The result depends only on `seed`, so the caller decides where randomness comes from (and
/// tests can pin it). Nearby seeds still give unrelated suffixes because the seed is mixed
/// before the characters are taken from it.
pub fn generate_name_suffix(seed: u64) -> String {
    let alphabet_size = NAME_SUFFIX_ALPHABET.len() as u64;
    let mut state = mix_seed(seed);
    let mut suffix = String::with_capacity(NAME_SUFFIX_LENGTH);
    for _ in 0..NAME_SUFFIX_LENGTH {
        // 27^5 is far below 2^64, so taking base-27 digits of one mixed value is unbiased enough
        // and needs no further randomness.
        let index = (state % alphabet_size) as usize;
        state /= alphabet_size;
        suffix.push(char::from(NAME_SUFFIX_ALPHABET[index]));
    }
    suffix
}

/// Scrambles a seed with the SplitMix64 finaliser, so that consecutive seeds (a counter, a
/// timestamp) map to values that differ in every bit.
fn mix_seed(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Reports whether `s` matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns1123_label_text(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    is_lower_alphanumeric(first)
        && is_lower_alphanumeric(last)
        && bytes.iter().all(|&b| is_lower_alphanumeric(b) || b == b'-')
}

/// Reports whether `s` is one or more RFC 1123 labels joined by dots.
fn is_dns1123_subdomain_text(s: &str) -> bool {
    s.split('.').all(is_dns1123_label_text)
}

/// Reports whether `s` matches `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_qualified_name_text(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_lower_alphanumeric(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn max_length_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Formats a rule violation the way Kubernetes does: the rule, some valid examples, and the
/// regular expression that defines the rule.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}'")).collect();
    format!(
        "{message} (e.g. {}, regex used for validation is '{format}')",
        examples.join(" or ")
    )
}

fn finish(errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn dns1123_subdomain_accepts_dotted_lowercase_names() {
        for name in ["a", "example.com", "my-app.v1", "0", "a-b.c-d.e", "123"] {
            assert_eq!(dns1123_subdomain(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn dns1123_subdomain_rejects_bad_characters_and_edges() {
        for name in [
            "",
            "A",
            "Example.com",
            "-a",
            "a-",
            "a.",
            ".a",
            "a..b",
            "a.-b",
            "a_b",
            "a b",
            "é",
        ] {
            let message = dns1123_subdomain(name).expect_err(name);
            assert!(
                message.starts_with(DNS1123_SUBDOMAIN_MESSAGE),
                "{name}: {message}"
            );
            assert!(message.contains("'example.com'"), "{message}");
        }
    }

    #[test]
    fn dns1123_subdomain_allows_253_characters_but_not_254() {
        let ok = format!("{}.{}", "a".repeat(63), "b".repeat(189));
        assert_eq!(ok.len(), 253);
        assert_eq!(dns1123_subdomain(&ok), Ok(()));
        let too_long = format!("{ok}c");
        assert_eq!(
            dns1123_subdomain(&too_long),
            Err("must be no more than 253 characters".to_string())
        );
    }

    #[test]
    fn dns1123_subdomain_reports_every_broken_rule() {
        let message = dns1123_subdomain(&"A".repeat(300)).unwrap_err();
        assert!(message.starts_with("must be no more than 253 characters; "));
        assert!(message.contains(DNS1123_SUBDOMAIN_MESSAGE));
    }

    #[test]
    fn dns1123_label_accepts_lowercase_names_without_dots() {
        for name in ["a", "kube-system", "0abc", "a1-b2"] {
            assert_eq!(dns1123_label(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn dns1123_label_rejects_dots_uppercase_and_edges() {
        for name in ["", "a.b", "Abc", "-a", "a-", "a_b"] {
            let message = dns1123_label(name).expect_err(name);
            assert_eq!(
                message,
                format!(
                    "{DNS1123_LABEL_MESSAGE} (e.g. 'my-name' or '123-abc', regex used for \
                     validation is '{DNS1123_LABEL_FORMAT}')"
                )
            );
        }
    }

    #[test]
    fn dns1123_label_allows_63_characters_but_not_64() {
        assert_eq!(dns1123_label(&"a".repeat(63)), Ok(()));
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            Err("must be no more than 63 characters".to_string())
        );
    }

    #[test]
    fn label_key_accepts_plain_and_prefixed_keys() {
        for key in [
            "app",
            "App_Name.v1",
            "a",
            "app.kubernetes.io/name",
            "example.com/My-Key",
            "1",
        ] {
            assert_eq!(label_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn label_key_rejects_empty_name_part() {
        assert!(
            label_key("")
                .unwrap_err()
                .contains("name part must be non-empty")
        );
        assert!(
            label_key("example.com/")
                .unwrap_err()
                .contains("name part must be non-empty")
        );
    }

    #[test]
    fn label_key_rejects_empty_or_invalid_prefix() {
        assert_eq!(
            label_key("/name"),
            Err("prefix part must be non-empty".to_string())
        );
        let message = label_key("Example.com/name").unwrap_err();
        assert!(
            message.starts_with(&format!("prefix part {DNS1123_SUBDOMAIN_MESSAGE}")),
            "{message}"
        );
    }

    #[test]
    fn label_key_rejects_more_than_one_slash() {
        let message = label_key("a/b/c").unwrap_err();
        assert!(
            message.starts_with("a qualified name must consist of"),
            "{message}"
        );
        assert!(message.contains("'example.com/MyName'"), "{message}");
    }

    #[test]
    fn label_key_rejects_bad_name_part_characters() {
        for key in ["-a", "a-", "_a", "a.", "a b", "a:b", "example.com/-a"] {
            let message = label_key(key).expect_err(key);
            assert!(
                message.starts_with(&format!("name part {QUALIFIED_NAME_MESSAGE}")),
                "{key}: {message}"
            );
        }
    }

    #[test]
    fn label_key_limits_name_part_to_63_characters() {
        assert_eq!(label_key(&"a".repeat(63)), Ok(()));
        assert_eq!(
            label_key(&"a".repeat(64)),
            Err("name part must be no more than 63 characters".to_string())
        );
        // The prefix may be longer than 63 characters because it is a subdomain.
        let long_prefix = format!("{}.example.com/name", "a".repeat(63));
        assert_eq!(label_key(&long_prefix), Ok(()));
    }

    #[test]
    fn qualified_name_follows_the_label_key_rules() {
        assert_eq!(qualified_name("kubectl.kubernetes.io/last-applied"), Ok(()));
        assert_eq!(qualified_name("a/b/c"), label_key("a/b/c"));
        assert_eq!(qualified_name("bad key"), label_key("bad key"));
    }

    #[test]
    fn label_value_accepts_empty_and_well_formed_values() {
        for value in ["", "a", "v1.2.3", "My_Value-1", "12345"] {
            assert_eq!(label_value(value), Ok(()), "{value}");
        }
    }

    #[test]
    fn label_value_rejects_bad_characters_and_edges() {
        for value in ["-a", "a-", ".a", "a b", "a/b", "é"] {
            let message = label_value(value).expect_err(value);
            assert!(
                message.starts_with(LABEL_VALUE_MESSAGE),
                "{value}: {message}"
            );
            assert!(message.contains("'my_value'"), "{message}");
        }
    }

    #[test]
    fn label_value_allows_63_characters_but_not_64() {
        assert_eq!(label_value(&"v".repeat(63)), Ok(()));
        assert_eq!(
            label_value(&"v".repeat(64)),
            Err("must be no more than 63 characters".to_string())
        );
    }

    #[test]
    fn generate_name_suffix_has_five_characters_from_the_kubernetes_alphabet() {
        for seed in [0, 1, 42, u64::MAX, 0xDEAD_BEEF] {
            let suffix = generate_name_suffix(seed);
            assert_eq!(suffix.len(), 5, "{suffix}");
            assert!(
                suffix.bytes().all(|b| NAME_SUFFIX_ALPHABET.contains(&b)),
                "{suffix}"
            );
        }
    }

    #[test]
    fn generate_name_suffix_is_deterministic_for_a_seed() {
        assert_eq!(generate_name_suffix(7), generate_name_suffix(7));
    }

    #[test]
    fn generate_name_suffix_spreads_consecutive_seeds() {
        let suffixes: HashSet<String> = (0..1000).map(generate_name_suffix).collect();
        // With 27^5 possible suffixes, a thousand consecutive seeds should almost never collide.
        assert!(suffixes.len() >= 995, "only {} distinct", suffixes.len());
    }

    #[test]
    fn generated_names_are_valid_object_names() {
        let name = format!("web-{}", generate_name_suffix(99));
        assert_eq!(dns1123_subdomain(&name), Ok(()));
        assert_eq!(dns1123_label(&name), Ok(()));
    }
}
