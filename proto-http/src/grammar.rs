//! Byte classes of the HTTP grammar as 256-entry lookup tables, built at compile time.
//!
//! ```text
//! tchar        = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//!                "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA          ; RFC 9110 §5.6.2
//! field-vchar  = VCHAR / obs-text                                     ; RFC 9110 §5.5
//! obs-text     = %x80-FF
//! ```
//! A request-target is restricted to visible ASCII (`%x21-7E`): RFC 3986 allows nothing else
//! unencoded, and a byte outside it is more likely an attack than a client bug.

/// A 256-entry table of `$pred` over every byte (a macro: const fns cannot call fn pointers).
macro_rules! table {
    ($pred:ident) => {{
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            table[i] = $pred(i as u8);
            i += 1;
        }
        table
    }};
}

const fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

const fn target_char(b: u8) -> bool {
    b >= 0x21 && b <= 0x7e
}

static TCHAR: [bool; 256] = table!(tchar);
static TARGET: [bool; 256] = table!(target_char);

/// True for a byte allowed in a token (method, field name, transfer coding).
#[inline(always)]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// True for a byte allowed unencoded in a request-target.
#[inline(always)]
pub(crate) fn is_target_char(b: u8) -> bool {
    TARGET[b as usize]
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte at or after `i` that is not a plain field-vchar or SP, that is a
/// control byte (`< 0x20`, which includes HTAB, CR and LF) or DEL; `buf.len()` if there is none.
///
/// Eight bytes at a time: for a word `x`, `(x - 0x20..20) & !x & 0x80..80` flags bytes below
/// 0x20 and `haszero(x ^ 0x7f..7f)` flags DEL. A borrow can only flag a byte *above* a real hit,
/// so the lowest flagged byte is always exact.
#[inline]
pub(crate) fn scan_value(buf: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = buf.get(i..i + 8) {
        let x = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        let below_space = x.wrapping_sub(0x20 * LOW) & !x & HIGH;
        let y = x ^ (0x7f * LOW);
        let del = y.wrapping_sub(LOW) & !y & HIGH;
        let hits = below_space | del;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = buf.get(i) {
        if b < 0x20 || b == 0x7f {
            return i;
        }
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is not a request-target byte; `buf.len()` if none.
#[inline]
pub(crate) fn scan_target(buf: &[u8], mut i: usize) -> usize {
    while let Some(&b) = buf.get(i) {
        if !is_target_char(b) {
            return i;
        }
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is not a tchar; `buf.len()` if none.
#[inline]
pub(crate) fn scan_token(buf: &[u8], mut i: usize) -> usize {
    while let Some(&b) = buf.get(i) {
        if !is_tchar(b) {
            return i;
        }
        i += 1;
    }
    i
}

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_value_finds_the_first_control_byte_at_every_offset() {
        for len in 0..40 {
            for bad_at in 0..=len {
                for bad in [0u8, b'\t', b'\r', b'\n', 0x1f, 0x7f] {
                    let mut v: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    if bad_at < len {
                        v[bad_at] = bad;
                    }
                    // A high obs-text byte and a space must never stop the scan.
                    if len > 3 && bad_at != 1 {
                        v[1] = 0xff;
                    }
                    if len > 5 && bad_at != 4 {
                        v[4] = b' ';
                    }
                    assert_eq!(
                        scan_value(&v, 0),
                        bad_at.min(len),
                        "len {len} bad_at {bad_at} byte {bad}"
                    );
                }
            }
        }
    }

    #[test]
    fn token_and_target_classes() {
        for b in 0u8..=255 {
            let expected_tchar = b"!#$%&'*+-.^_`|~".contains(&b) || b.is_ascii_alphanumeric();
            assert_eq!(is_tchar(b), expected_tchar, "tchar {b:#x}");
            assert_eq!(
                is_target_char(b),
                (0x21..=0x7e).contains(&b),
                "target {b:#x}"
            );
        }
    }

    #[test]
    fn ows_trimmed_both_ends() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }
}
