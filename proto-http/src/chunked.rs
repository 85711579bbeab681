//! The incremental chunked-body decoder (RFC 9112 §7.1).
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! quoted-string  = DQUOTE *( qdtext / quoted-pair ) DQUOTE
//! qdtext         = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
//! quoted-pair    = "\" ( HTAB / SP / VCHAR / obs-text )
//! trailer-section = *( field-line CRLF )
//! ```
//! Extensions are held to that grammar (RFC 9112 §7.1.1), because a parser in front of us that
//! reads a malformed one differently (`5;` or `5;bad[=x`) would frame the body differently;
//! they are then ignored. Extensions and trailers are bounded by [`Limits`]. The decoder is a state machine
//! fed any split of the input; it stops right after the body, leaving pipelined bytes unread.

use crate::grammar::is_tchar;
use crate::{Error, Limits};

/// Where the decoder stands between two bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size (at least one seen when `digits > 0`).
    Size,
    /// Whitespace after the size: only a `;` (an extension) may follow.
    SizeWhitespace,
    /// After a `;`: BWS, then the first byte of a name.
    ExtBeforeName,
    /// Inside an extension name (a token).
    ExtName,
    /// BWS after a name: `=`, `;` or more whitespace may follow (not CR: BWS only comes before
    /// `;` or `=` in the grammar).
    ExtAfterName,
    /// After `=`: BWS, then a token or a quoted-string.
    ExtBeforeValue,
    /// Inside a token value.
    ExtToken,
    /// Inside a quoted-string value.
    ExtQuoted,
    /// After a `\` in a quoted-string: one escaped byte.
    ExtQuotedPair,
    /// Right after the closing quote of a quoted-string.
    ExtQuotedEnd,
    /// BWS after a value: `;` or more whitespace may follow.
    ExtAfterValue,
    /// Saw the CR of the size line; LF must follow.
    SizeLf,
    /// Inside chunk data, `remaining` bytes to go.
    Data,
    /// Chunk data ended; CR must follow.
    DataCr,
    /// CR after chunk data; LF must follow.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line, until CR.
    TrailerLine,
    /// Saw the CR of a trailer field line; LF must follow.
    TrailerLf,
    /// Saw the CR of the final empty line; LF must follow.
    EndLf,
    /// The whole body has been read.
    Done,
    /// An error was returned; every later call returns it again.
    Failed(Error),
}

/// Hex digits allowed in one chunk size, leading zeros included: 16 digits hold any u64, and a
/// client has no reason to send more than a few zeros in front.
const CHUNK_SIZE_DIGITS_MAX: u32 = 32;

/// Progress of one [`ChunkedDecoder::decode`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes consumed; the caller drops them before the next call.
    pub consumed: usize,
    /// The body ended within the consumed bytes.
    pub done: bool,
}

/// Decodes a chunked body fed in pieces, appending the data to a caller's buffer.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Hex digits read of the current size (to reject an empty size).
    digits: u32,
    /// The size being read, then the data bytes left in the current chunk.
    remaining: u64,
    /// Data bytes decoded so far, checked against `body_bytes_max`.
    total: u64,
    /// Bytes of the current chunk extension.
    extension_bytes: usize,
    /// Bytes of trailer section so far.
    trailer_bytes: usize,
    limits: Limits,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body, bounded by `limits`.
    pub fn new(limits: &Limits) -> Self {
        ChunkedDecoder {
            state: State::Size,
            digits: 0,
            remaining: 0,
            total: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
            limits: *limits,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes decoded so far.
    pub fn body_len(&self) -> u64 {
        self.total
    }

    /// Decodes from `input`, appending chunk data to `out`, until the input runs out or the body
    /// ends. Errors are final: the message is malformed and the connection must close.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Decoded, Error> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        let result = self.decode_inner(input, out);
        if let Err(e) = result {
            self.state = State::Failed(e);
        }
        result
    }

    fn decode_inner(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Decoded, Error> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => match hex_value(b) {
                    Some(v) => {
                        self.remaining = self
                            .remaining
                            .checked_mul(16)
                            .and_then(|r| r.checked_add(u64::from(v)))
                            .ok_or(Error::BadChunkSize)?;
                        self.digits += 1;
                        if self.digits > CHUNK_SIZE_DIGITS_MAX {
                            return Err(Error::BadChunkSize);
                        }
                    }
                    None if self.digits == 0 => return Err(Error::BadChunkSize),
                    None => {
                        self.state = match b {
                            b'\r' => State::SizeLf,
                            b';' => {
                                self.extension_byte()?;
                                State::ExtBeforeName
                            }
                            b' ' | b'\t' => State::SizeWhitespace,
                            b'\n' => return Err(Error::BareLf),
                            _ => return Err(Error::BadChunkSize),
                        };
                        self.total = self
                            .total
                            .checked_add(self.remaining)
                            .ok_or(Error::BodyTooLarge)?;
                        if self.total > self.limits.body_bytes_max {
                            return Err(Error::BodyTooLarge);
                        }
                    }
                },
                State::SizeWhitespace
                | State::ExtBeforeName
                | State::ExtName
                | State::ExtAfterName
                | State::ExtBeforeValue
                | State::ExtToken
                | State::ExtQuoted
                | State::ExtQuotedPair
                | State::ExtQuotedEnd
                | State::ExtAfterValue => {
                    self.state = extension_step(self.state, b)?;
                    if self.state != State::SizeLf {
                        self.extension_byte()?;
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(Error::BareCr);
                    }
                    self.extension_bytes = 0;
                    self.digits = 0;
                    self.state = if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let available = input.len() - i;
                    let take = available.min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + take]);
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(Error::BadChunkEnd);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(Error::BadChunkEnd);
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::EndLf,
                    b'\n' => return Err(Error::BareLf),
                    b' ' | b'\t' | b':' => return Err(Error::BadTrailer),
                    _ => {
                        self.trailer_byte()?;
                        self.state = State::TrailerLine;
                    }
                },
                State::TrailerLine => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' => return Err(Error::BareLf),
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => self.trailer_byte()?,
                    _ => return Err(Error::BadTrailer),
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(Error::BareCr);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(Error::BareCr);
                    }
                    self.state = State::Done;
                    return Ok(Decoded {
                        consumed: i + 1,
                        done: true,
                    });
                }
                State::Failed(e) => return Err(e),
                State::Done => {
                    return Ok(Decoded {
                        consumed: i,
                        done: true,
                    })
                }
            }
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn extension_byte(&mut self) -> Result<(), Error> {
        self.extension_bytes += 1;
        if self.extension_bytes > self.limits.chunk_ext_bytes_max {
            return Err(Error::BadChunkExtension);
        }
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), Error> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.limits.trailer_bytes_max {
            return Err(Error::BadTrailer);
        }
        Ok(())
    }
}

/// One byte of a chunk extension (RFC 9112 §7.1.1): the next state, `SizeLf` at the CR that
/// ends a complete extension, or `BadChunkExtension`.
fn extension_step(state: State, b: u8) -> Result<State, Error> {
    let whitespace = b == b' ' || b == b'\t';
    Ok(match (state, b) {
        (State::SizeWhitespace, _) if whitespace => State::SizeWhitespace,
        (State::SizeWhitespace, b';') => State::ExtBeforeName,
        (State::ExtBeforeName, _) if whitespace => State::ExtBeforeName,
        (State::ExtBeforeName | State::ExtName, _) if is_tchar(b) => State::ExtName,
        (State::ExtName | State::ExtAfterName, _) if whitespace => State::ExtAfterName,
        (State::ExtName | State::ExtAfterName, b'=') => State::ExtBeforeValue,
        (State::ExtBeforeValue, _) if whitespace => State::ExtBeforeValue,
        (State::ExtBeforeValue, b'"') => State::ExtQuoted,
        (State::ExtBeforeValue | State::ExtToken, _) if is_tchar(b) => State::ExtToken,
        (State::ExtQuoted, b'"') => State::ExtQuotedEnd,
        (State::ExtQuoted, b'\\') => State::ExtQuotedPair,
        (State::ExtQuoted, b'\t' | 0x20..=0x7e | 0x80..=0xff) => State::ExtQuoted,
        (State::ExtQuotedPair, b'\t' | 0x20..=0x7e | 0x80..=0xff) => State::ExtQuoted,
        (State::ExtToken | State::ExtQuotedEnd | State::ExtAfterValue, _) if whitespace => {
            State::ExtAfterValue
        }
        (
            State::ExtName
            | State::ExtAfterName
            | State::ExtToken
            | State::ExtQuotedEnd
            | State::ExtAfterValue,
            b';',
        ) => State::ExtBeforeName,
        (State::ExtName | State::ExtToken | State::ExtQuotedEnd, b'\r') => State::SizeLf,
        _ => return Err(Error::BadChunkExtension),
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Decoded), Error> {
        let mut out = Vec::new();
        let d = ChunkedDecoder::new(&Limits::default()).decode(input, &mut out)?;
        Ok((out, d))
    }

    #[test]
    fn decodes_and_stops_at_the_end_of_the_body() {
        let input = b"3;x=y\r\nabc\r\n0A\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\nNEXT";
        let (out, d) = decode_all(input).unwrap();
        assert_eq!(out, b"abc0123456789");
        assert!(d.done);
        assert_eq!(&input[d.consumed..], b"NEXT");
    }

    #[test]
    fn every_split_gives_the_same_body() {
        let input = b"4\r\nWiki\r\n5 ; a\r\npedia\r\n0\r\n\r\n";
        for split in 0..=input.len() {
            let mut dec = ChunkedDecoder::new(&Limits::default());
            let mut out = Vec::new();
            let first = dec.decode(&input[..split], &mut out).unwrap();
            assert_eq!(first.consumed, split);
            assert_eq!(first.done, split == input.len());
            let second = dec.decode(&input[split..], &mut out).unwrap();
            assert!(second.done, "split {split}");
            assert_eq!(out, b"Wikipedia");
        }
    }
}
