//! Kubernetes resource quantities (`500m`, `1`, `1.5`, `128Mi`, `1G`, `2e3`) read as exact
//! integers, for the scheduler's arithmetic.
//!
//! A quantity is a decimal number with an optional suffix: a binary SI one (`Ki` … `Ei`,
//! powers of 1024), a decimal SI one (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or a
//! decimal exponent (`e3`, `E-2`). The arithmetic is done on integers, never floats, so that
//! `100m` is exactly 100 millicores; like Kubernetes' `Value`/`MilliValue`, results that are
//! not whole numbers round up. Negative quantities are refused (no request is negative), and
//! values past `u64::MAX` saturate.

/// CPU in millicores (`"500m"` → 500, `"1"` → 1000, `"0.1"` → 100).
pub fn millicores(quantity: &str) -> Option<u64> {
    scaled(quantity, 3)
}

/// A plain count or size, rounded up (`"128Mi"` → 134217728, `"1G"` → 1000000000, `"110"`
/// → 110).
pub fn value(quantity: &str) -> Option<u64> {
    scaled(quantity, 0)
}

/// The quantity times `10^extra_exponent`, rounded up.
fn scaled(quantity: &str, extra_exponent: i32) -> Option<u64> {
    let text = quantity.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    // More digits than this cannot be represented exactly; Kubernetes itself keeps far fewer.
    if whole.len() + fraction.len() > 36 {
        return None;
    }
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa * 10 + u128::from(digit - b'0');
    }
    let (decimal_exponent, binary_exponent) = suffix_exponents(suffix)?;
    let exponent = decimal_exponent + extra_exponent - fraction.len() as i32;
    let Some(mut value) = mantissa.checked_mul(1u128.checked_shl(binary_exponent)?) else {
        return Some(u64::MAX);
    };
    if exponent >= 0 {
        match 10u128
            .checked_pow(exponent as u32)
            .and_then(|p| value.checked_mul(p))
        {
            Some(v) => value = v,
            None => return Some(if value == 0 { 0 } else { u64::MAX }),
        }
    } else {
        value = match 10u128.checked_pow(exponent.unsigned_abs()) {
            Some(divisor) => value.div_ceil(divisor),
            // Dividing by more than u128 can hold: anything non-zero rounds up to one.
            None => u128::from(value != 0),
        };
    }
    Some(u64::try_from(value).unwrap_or(u64::MAX))
}

/// The (power of ten, power of two) a suffix stands for.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let exponent = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))?;
            let exponent: i32 = exponent.parse().ok()?;
            if !(-64..=64).contains(&exponent) {
                return None;
            }
            (exponent, 0)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_read_as_exact_millicores() {
        assert_eq!(millicores("500m"), Some(500));
        assert_eq!(millicores("1"), Some(1000));
        assert_eq!(millicores("0.1"), Some(100));
        assert_eq!(millicores(".5"), Some(500));
        assert_eq!(millicores("2.5"), Some(2500));
        assert_eq!(millicores("100m"), Some(100));
        // Below a millicore rounds up, as Kubernetes' MilliValue does.
        assert_eq!(millicores("1u"), Some(1));
        assert_eq!(millicores("0"), Some(0));
        assert_eq!(millicores("1e3"), Some(1_000_000));
    }

    #[test]
    fn memory_quantities_read_as_bytes_with_binary_and_decimal_suffixes() {
        assert_eq!(value("128Mi"), Some(128 << 20));
        assert_eq!(value("1Gi"), Some(1 << 30));
        assert_eq!(value("1.5Gi"), Some(3 << 29));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1k"), Some(1000));
        assert_eq!(value("1Ki"), Some(1024));
        assert_eq!(value("500000"), Some(500_000));
        assert_eq!(value("16318440Ki"), Some(16_318_440 * 1024));
        assert_eq!(value("110"), Some(110));
        // Fractions of a byte round up.
        assert_eq!(value("1500m"), Some(2));
        assert_eq!(value("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(value("2E-1"), Some(1));
    }

    #[test]
    fn malformed_negative_and_huge_quantities() {
        for bad in ["", "abc", "-1", "1Zi", "1mi", ".", "1e999", "Mi"] {
            assert_eq!(value(bad), None, "{bad:?}");
        }
        assert_eq!(value("100Ei"), Some(u64::MAX));
        assert_eq!(millicores("99999999999999999999"), Some(u64::MAX));
    }
}
