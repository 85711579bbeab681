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

/// The bytes of a `reg-name` that stand for themselves (RFC 3986 §3.2.2): unreserved and
/// sub-delims, except `,`. A comma is a sub-delim, so `a,b` is a reg-name, but no DNS name has
/// one, and in a Host field it is what a list (`a, b`) that some hop combined looks like (RFC
/// 9110 §5.3); a singleton field that looks like a list is refused, not guessed at.
const fn reg_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b';'
                | b'='
        )
}

static TCHAR: [bool; 256] = table!(tchar);
static TARGET: [bool; 256] = table!(target_char);
static REG_NAME: [bool; 256] = table!(reg_name_char);

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
#[inline]
pub(crate) fn scan_value(buf: &[u8], i: usize) -> usize {
    match simd::scan_value(buf, i) {
        Ok(stop) => stop,
        Err(tail) => scan_value_swar(buf, tail),
    }
}

/// The portable part of [`scan_value`], eight bytes at a time: for a word `x`,
/// `(x - 0x20..20) & !x & 0x80..80` flags bytes below 0x20 and `haszero(x ^ 0x7f..7f)` flags DEL.
/// A borrow can only flag a byte *above* a real hit, so the lowest flagged byte is always exact.
#[inline]
fn scan_value_swar(buf: &[u8], mut i: usize) -> usize {
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
pub(crate) fn scan_target(buf: &[u8], i: usize) -> usize {
    let mut i = match simd::scan_target(buf, i) {
        Ok(stop) => return stop,
        Err(tail) => tail,
    };
    while let Some(&b) = buf.get(i) {
        if !is_target_char(b) {
            return i;
        }
        i += 1;
    }
    i
}

/// Sixteen bytes at a time with SSE2, which every x86_64 CPU has (so no run-time detection).
/// httparse goes further with AVX2; on our heads (values of 10-120 bytes) 16 is the sweet spot.
/// Each function returns `Ok(index)` of the first byte outside its class, or `Err(index)` of the
/// tail shorter than 16 bytes that it could not look at; the portable code finishes from there.
#[cfg(target_arch = "x86_64")]
mod simd {
    use core::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_min_epu8,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// Lanes of `x` in `lo..=hi` (unsigned), as 0xff.
    ///
    /// # Safety
    /// SSE2 only, which x86_64 always has.
    #[inline(always)]
    unsafe fn in_range(x: __m128i, lo: u8, hi: u8) -> __m128i {
        let at_least_lo = _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(lo as i8)), x);
        let at_most_hi = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(hi as i8)), x);
        _mm_and_si128(at_least_lo, at_most_hi)
    }

    /// Skips blocks of the bytes almost every token is made of: letters, digits and `-`. The
    /// table loop that follows handles the rare tchars (`!#$%&'*+.^_`|~`) and the stop byte.
    #[inline]
    pub(super) fn scan_common_token(buf: &[u8], mut i: usize) -> Result<usize, usize> {
        while let Some(block) = buf.get(i..i + 16) {
            // SAFETY: `block` holds 16 readable bytes and `loadu` has no alignment requirement;
            // SSE2 is part of the x86_64 baseline.
            let ok = unsafe {
                let x = _mm_loadu_si128(block.as_ptr().cast());
                let letter = in_range(_mm_or_si128(x, _mm_set1_epi8(0x20)), b'a', b'z');
                let digit = in_range(x, b'0', b'9');
                let dash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'-' as i8));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), dash)) as u32
            };
            if ok != 0xffff {
                return Ok(i + (!ok).trailing_zeros() as usize);
            }
            i += 16;
        }
        Err(i)
    }

    /// One bit per byte of `block[..16]`: set where the byte is in `lo..=hi` (unsigned).
    #[inline(always)]
    fn in_range_mask(block: &[u8], lo: u8, hi: u8) -> u32 {
        assert!(block.len() >= 16);
        // SAFETY: `block` holds at least 16 readable bytes (asserted above) and `loadu` has no
        // alignment requirement. SSE2 is part of the x86_64 baseline, so every instruction here
        // exists on every CPU this code can run on.
        unsafe {
            let x = _mm_loadu_si128(block.as_ptr().cast());
            let at_least_lo = _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(lo as i8)), x);
            let at_most_hi = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(hi as i8)), x);
            (_mm_movemask_epi8(at_least_lo) & _mm_movemask_epi8(at_most_hi)) as u32
        }
    }

    /// One bit per byte: set where the byte equals `b`.
    #[inline(always)]
    fn eq_mask(block: &[u8], b: u8) -> u32 {
        assert!(block.len() >= 16);
        // SAFETY: as in `in_range_mask`.
        unsafe {
            _mm_movemask_epi8(_mm_cmpeq_epi8(
                _mm_loadu_si128(block.as_ptr().cast()),
                _mm_set1_epi8(b as i8),
            )) as u32
        }
    }

    /// Skips blocks of field-vchar / SP (`0x20..=0xff` except DEL).
    #[inline]
    pub(super) fn scan_value(buf: &[u8], mut i: usize) -> Result<usize, usize> {
        while let Some(block) = buf.get(i..i + 16) {
            let ok = in_range_mask(block, 0x20, 0xff) & !eq_mask(block, 0x7f);
            if ok != 0xffff {
                return Ok(i + (!ok).trailing_zeros() as usize);
            }
            i += 16;
        }
        Err(i)
    }

    /// Skips blocks of visible ASCII (`0x21..=0x7e`).
    #[inline]
    pub(super) fn scan_target(buf: &[u8], mut i: usize) -> Result<usize, usize> {
        while let Some(block) = buf.get(i..i + 16) {
            let ok = in_range_mask(block, 0x21, 0x7e);
            if ok != 0xffff {
                return Ok(i + (!ok).trailing_zeros() as usize);
            }
            i += 16;
        }
        Err(i)
    }
}

/// Elsewhere the portable loops do all the work.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    #[inline(always)]
    pub(super) fn scan_value(_buf: &[u8], i: usize) -> Result<usize, usize> {
        Err(i)
    }

    #[inline(always)]
    pub(super) fn scan_target(_buf: &[u8], i: usize) -> Result<usize, usize> {
        Err(i)
    }

    #[inline(always)]
    pub(super) fn scan_common_token(_buf: &[u8], i: usize) -> Result<usize, usize> {
        Err(i)
    }
}

/// Index of the first byte at or after `i` that is not a tchar; `buf.len()` if none.
#[inline]
pub(crate) fn scan_token(buf: &[u8], i: usize) -> usize {
    let mut i = match simd::scan_common_token(buf, i) {
        Ok(stop) if !is_tchar(buf[stop]) => return stop,
        Ok(rare) => rare,
        Err(tail) => tail,
    };
    while let Some(&b) = buf.get(i) {
        if !is_tchar(b) {
            return i;
        }
        i += 1;
    }
    i
}

/// Whether an authority must name a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Port {
    /// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2).
    Optional,
    /// CONNECT's `authority-form = uri-host ":" port` (RFC 9112 §3.2.3), with a port that is not
    /// empty (RFC 9110 §9.3.6: a CONNECT with an empty or invalid port MUST be rejected).
    Required,
}

/// Digits of a port: ports are 16-bit, so a sixth digit is never a port a client can mean.
const PORT_DIGITS_MAX: usize = 5;

/// Whether `value` is an authority without userinfo (RFC 3986 §3.2, as RFC 9110 §4.2.1 uses it):
///
/// ```text
/// uri-host    = IP-literal / IPv4address / reg-name    ; IPv4address is a reg-name by syntax
/// IP-literal  = "[" ( IPv6address / IPvFuture ) "]"
/// IPvFuture   = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
/// reg-name    = *( unreserved / pct-encoded / sub-delims )
/// port        = *DIGIT
/// ```
/// An empty host is refused (RFC 9110 §4.2.1: an `http` URI with an empty host is invalid), as
/// are userinfo (`@`), a path (`/`), whitespace and a comma (see [`reg_name_char`]).
pub(crate) fn is_authority(value: &[u8], port: Port) -> bool {
    let rest = match value {
        [b'[', inner @ ..] => match inner.iter().position(|&b| b == b']') {
            Some(end) if is_ip_literal(&inner[..end]) => &inner[end + 1..],
            _ => return false,
        },
        _ => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            if end == 0 || !is_reg_name(&value[..end]) {
                return false;
            }
            &value[end..]
        }
    };
    match rest {
        [] => port == Port::Optional,
        [b':', digits @ ..] => {
            (port == Port::Optional || !digits.is_empty())
                && digits.len() <= PORT_DIGITS_MAX
                && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// `reg-name`: [`REG_NAME`] bytes and `%` HEXDIG HEXDIG.
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        if b == b'%' {
            match name.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if REG_NAME[b as usize] {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// The inside of `[...]`: an IPv6 address (std's parser: exact, and it does not allocate) or an
/// IPvFuture.
fn is_ip_literal(inner: &[u8]) -> bool {
    match inner {
        [b'v' | b'V', rest @ ..] => {
            let dot = rest.iter().position(|&b| b == b'.').unwrap_or(0);
            dot > 0
                && rest[..dot].iter().all(u8::is_ascii_hexdigit)
                && rest.len() > dot + 1
                && rest[dot + 1..]
                    .iter()
                    .all(|&b| b == b':' || (b != b'%' && REG_NAME[b as usize]) || b == b',')
        }
        _ => core::str::from_utf8(inner)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .is_some(),
    }
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
    fn scan_target_finds_the_first_non_visible_byte_at_every_offset() {
        for len in 0..50 {
            for bad_at in 0..=len {
                for bad in [0u8, b' ', b'\t', b'\r', 0x7f, 0x80, 0xff] {
                    let mut v: Vec<u8> = (0..len).map(|i| b'!' + (i % 94) as u8).collect();
                    if bad_at < len {
                        v[bad_at] = bad;
                    }
                    assert_eq!(
                        scan_target(&v, 0),
                        bad_at.min(len),
                        "len {len} bad_at {bad_at} byte {bad}"
                    );
                    assert_eq!(
                        scan_value(&v, 0),
                        if bad < 0x20 || bad == 0x7f {
                            bad_at.min(len)
                        } else {
                            len
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn scan_token_stops_at_the_first_non_tchar_at_every_offset() {
        let specials = b"!#$%&'*+-.^_`|~";
        for len in 0..40 {
            for stop_at in 0..=len {
                for stop in [b':', b' ', b'@', b'\r', 0x80, b'/'] {
                    let mut v: Vec<u8> = (0..len)
                        .map(|i| match i % 5 {
                            0 => b'a' + (i % 26) as u8,
                            1 => b'Z',
                            2 => b'0' + (i % 10) as u8,
                            3 => b'-',
                            _ => specials[i % specials.len()],
                        })
                        .collect();
                    if stop_at < len {
                        v[stop_at] = stop;
                    }
                    assert_eq!(
                        scan_token(&v, 0),
                        stop_at.min(len),
                        "len {len} stop_at {stop_at} byte {stop}"
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
    fn authorities() {
        let table: &[(&[u8], bool, bool)] = &[
            // (value, valid as Host, valid as CONNECT's authority-form)
            (b"h", true, false),
            (b"localhost:8000", true, true),
            (b"127.0.0.1:8000", true, true),
            (b"example.com:443", true, true),
            (b"a-b_c~d.e!$&'()*+;=", true, false),
            (b"%41b", true, false),
            (b"h:", true, false),
            (b"[::1]", true, false),
            (b"[::1]:8000", true, true),
            (b"[2001:db8::7]:80", true, true),
            (b"[v1.fe:80]:1", true, true),
            (b"", false, false),
            (b":80", false, false),
            (b"user@h", false, false),
            (b"h/path", false, false),
            (b"a, b", false, false),
            (b"a,b", false, false),
            (b"a b", false, false),
            (b"h:80:80", false, false),
            (b"h:8x", false, false),
            (b"h:123456", false, false),
            (b"%4", false, false),
            (b"%zz", false, false),
            (b"[::1", false, false),
            (b"[::g]", false, false),
            (b"[]", false, false),
            (b"[::1]x", false, false),
            (b"[v.x]", false, false),
            (b"[vz.x]", false, false),
            (b"h\xff", false, false),
            (b"h?q", false, false),
            (b"h#f", false, false),
        ];
        for &(value, host, connect) in table {
            let show = String::from_utf8_lossy(value);
            assert_eq!(is_authority(value, Port::Optional), host, "Host {show}");
            assert_eq!(
                is_authority(value, Port::Required),
                connect,
                "CONNECT {show}"
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
