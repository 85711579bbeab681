//! The parser's errors: a small fieldless `Copy` enum, and the one exhaustive map from an error to
//! the status a server answers with. "Not enough bytes yet" is not an error (`Status::Partial`).

use core::fmt;

/// Why bytes were rejected. Every variant names one rule of RFC 9112 / RFC 9110 (or one of our
/// limits), so a log line or a counter says exactly what the peer did wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The request line is not `method SP request-target SP HTTP-version CRLF`: a double space,
    /// a missing part, a non-token method.
    BadRequestLine,
    /// The request-target holds a byte outside visible ASCII.
    BadTarget,
    /// The HTTP-version is not `HTTP/` DIGIT `.` DIGIT (for example `HTTP/1.32`, `HTTP/01.1`).
    BadVersion,
    /// A well-formed version whose major number is not 1 (`HTTP/2.0`, `HTTP/0.9`).
    VersionNotSupported,
    /// The request-target is longer than `Limits::target_bytes_max`.
    TargetTooLong,
    /// The head did not end within `Limits::head_bytes_max` bytes.
    HeadTooLarge,
    /// More header fields than the caller's header storage holds.
    TooManyHeaders,
    /// A field line starts with whitespace: obsolete line folding (RFC 9112 §5.2).
    ObsFold,
    /// Whitespace between a field name and its colon (RFC 9112 §5.1: MUST reject).
    WhitespaceBeforeColon,
    /// A field line whose name is empty (`: value`).
    EmptyHeaderName,
    /// A field name with a byte that is not a tchar, or a field line without a colon.
    BadHeaderName,
    /// A field value with NUL, DEL or another control byte (other than HTAB).
    BadHeaderValue,
    /// A CR not followed by LF (RFC 9112 §2.2: MUST reject or replace; we reject).
    BareCr,
    /// An LF not preceded by CR. RFC 9112 §2.2 lets a recipient accept a bare LF as a line
    /// terminator; we do not, because parsers that disagree on line ends enable smuggling.
    BareLf,
    /// An HTTP/1.1 request without a Host field (RFC 9112 §3.2: MUST respond 400).
    MissingHost,
    /// More than one Host field line (RFC 9112 §3.2: MUST respond 400).
    DuplicateHost,
    /// A Host value that is not `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 9112 §3.2: MUST
    /// respond 400): userinfo, a path, a list, whitespace; or empty in HTTP/1.1.
    BadHost,
    /// A request-target in a form the method may not use (RFC 9112 §3.2): `*` other than with
    /// OPTIONS, authority-form other than with CONNECT, CONNECT with another form, or a target
    /// that is none of the four forms.
    BadTargetForm,
    /// A Content-Length that is not plain digits (`+5`, `-1`, `0x10`, empty), or overflows.
    BadContentLength,
    /// Two Content-Length values that differ (RFC 9110 §8.6).
    ConflictingContentLength,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.3: a smuggling vector; we reject).
    ContentLengthWithTransferEncoding,
    /// A Transfer-Encoding whose final coding is not `chunked`, that names `chunked` twice, or is
    /// empty (RFC 9112 §6.3: MUST respond 400).
    BadTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 message (RFC 9112 §6.1: MUST treat as faulty framing).
    TransferEncodingInHttp10,
    /// A transfer coding we do not implement (anything but `chunked` in a request: RFC 9112 §6.1
    /// says 501).
    UnsupportedTransferCoding,
    /// An `Expect` other than `100-continue` (RFC 9110 §10.1.1: 417).
    UnsupportedExpectation,
    /// A declared or decoded body larger than `Limits::body_bytes_max`.
    BodyTooLarge,
    /// A chunk size that is empty, not hex, or overflows.
    BadChunkSize,
    /// Chunk data not followed by CRLF.
    BadChunkEnd,
    /// A chunk extension that does not follow RFC 9112 §7.1.1 (`;` BWS token [ BWS `=` BWS
    /// token / quoted-string ]), or longer than `Limits::chunk_ext_bytes_max`.
    BadChunkExtension,
    /// Trailer fields larger than `Limits::trailer_bytes_max` or malformed.
    BadTrailer,
    /// A response status line that is not `HTTP-version SP 3DIGIT SP reason CRLF`.
    BadStatusLine,
}

impl Error {
    /// Every variant, for tests and for counters indexed by error.
    pub const ALL: [Error; 31] = [
        Error::BadRequestLine,
        Error::BadTarget,
        Error::BadVersion,
        Error::VersionNotSupported,
        Error::TargetTooLong,
        Error::HeadTooLarge,
        Error::TooManyHeaders,
        Error::ObsFold,
        Error::WhitespaceBeforeColon,
        Error::EmptyHeaderName,
        Error::BadHeaderName,
        Error::BadHeaderValue,
        Error::BareCr,
        Error::BareLf,
        Error::MissingHost,
        Error::DuplicateHost,
        Error::BadHost,
        Error::BadTargetForm,
        Error::BadContentLength,
        Error::ConflictingContentLength,
        Error::ContentLengthWithTransferEncoding,
        Error::BadTransferEncoding,
        Error::TransferEncodingInHttp10,
        Error::UnsupportedTransferCoding,
        Error::UnsupportedExpectation,
        Error::BodyTooLarge,
        Error::BadChunkSize,
        Error::BadChunkEnd,
        Error::BadChunkExtension,
        Error::BadTrailer,
        Error::BadStatusLine,
    ];

    /// The status a server answers a request that failed with this error. One exhaustive match:
    /// adding a variant does not compile until it has a status.
    ///
    /// `BadStatusLine` only arises when *we* are the client (the pooled forwarder reading an
    /// upstream response); the contract answers a broken upstream with 503.
    pub const fn status(self) -> u16 {
        match self {
            Error::BadRequestLine
            | Error::BadTarget
            | Error::BadVersion
            | Error::ObsFold
            | Error::WhitespaceBeforeColon
            | Error::EmptyHeaderName
            | Error::BadHeaderName
            | Error::BadHeaderValue
            | Error::BareCr
            | Error::BareLf
            | Error::MissingHost
            | Error::DuplicateHost
            | Error::BadHost
            | Error::BadTargetForm
            | Error::BadContentLength
            | Error::ConflictingContentLength
            | Error::ContentLengthWithTransferEncoding
            | Error::BadTransferEncoding
            | Error::TransferEncodingInHttp10
            | Error::BadChunkSize
            | Error::BadChunkEnd
            | Error::BadChunkExtension
            | Error::BadTrailer => 400,
            Error::BodyTooLarge => 413,
            Error::TargetTooLong => 414,
            Error::UnsupportedExpectation => 417,
            Error::HeadTooLarge | Error::TooManyHeaders => 431,
            Error::UnsupportedTransferCoding => 501,
            Error::BadStatusLine => 503,
            Error::VersionNotSupported => 505,
        }
    }

    /// A short stable name, for JSON error bodies, metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::BadRequestLine => "bad_request_line",
            Error::BadTarget => "bad_target",
            Error::BadVersion => "bad_version",
            Error::VersionNotSupported => "version_not_supported",
            Error::TargetTooLong => "target_too_long",
            Error::HeadTooLarge => "head_too_large",
            Error::TooManyHeaders => "too_many_headers",
            Error::ObsFold => "obs_fold",
            Error::WhitespaceBeforeColon => "whitespace_before_colon",
            Error::EmptyHeaderName => "empty_header_name",
            Error::BadHeaderName => "bad_header_name",
            Error::BadHeaderValue => "bad_header_value",
            Error::BareCr => "bare_cr",
            Error::BareLf => "bare_lf",
            Error::MissingHost => "missing_host",
            Error::DuplicateHost => "duplicate_host",
            Error::BadHost => "bad_host",
            Error::BadTargetForm => "bad_target_form",
            Error::BadContentLength => "bad_content_length",
            Error::ConflictingContentLength => "conflicting_content_length",
            Error::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Error::BadTransferEncoding => "bad_transfer_encoding",
            Error::TransferEncodingInHttp10 => "transfer_encoding_in_http10",
            Error::UnsupportedTransferCoding => "unsupported_transfer_coding",
            Error::UnsupportedExpectation => "unsupported_expectation",
            Error::BodyTooLarge => "body_too_large",
            Error::BadChunkSize => "bad_chunk_size",
            Error::BadChunkEnd => "bad_chunk_end",
            Error::BadChunkExtension => "bad_chunk_extension",
            Error::BadTrailer => "bad_trailer",
            Error::BadStatusLine => "bad_status_line",
        }
    }

    /// A human sentence for the `detail` of a JSON error body.
    pub const fn detail(self) -> &'static str {
        match self {
            Error::BadRequestLine => "malformed request line",
            Error::BadTarget => "request target contains a byte outside visible ASCII",
            Error::BadVersion => "malformed HTTP version",
            Error::VersionNotSupported => "only HTTP/1.x is supported",
            Error::TargetTooLong => "request target too long",
            Error::HeadTooLarge => "request head too large",
            Error::TooManyHeaders => "too many header fields",
            Error::ObsFold => "obsolete line folding is not accepted",
            Error::WhitespaceBeforeColon => "whitespace between field name and colon",
            Error::EmptyHeaderName => "empty field name",
            Error::BadHeaderName => "malformed field name",
            Error::BadHeaderValue => "control character in field value",
            Error::BareCr => "CR not followed by LF",
            Error::BareLf => "LF not preceded by CR",
            Error::MissingHost => "HTTP/1.1 request without Host",
            Error::DuplicateHost => "more than one Host field",
            Error::BadHost => "Host is not a host name or address with an optional port",
            Error::BadTargetForm => {
                "request target form not allowed with this method: * only with OPTIONS, \
                 host:port only with CONNECT"
            }
            Error::BadContentLength => "Content-Length is not a plain decimal number",
            Error::ConflictingContentLength => "differing Content-Length values",
            Error::ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
            Error::BadTransferEncoding => "Transfer-Encoding must end with a single chunked",
            Error::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            Error::UnsupportedTransferCoding => "transfer coding not implemented",
            Error::UnsupportedExpectation => "only Expect: 100-continue is supported",
            Error::BodyTooLarge => "request body too large",
            Error::BadChunkSize => "malformed chunk size",
            Error::BadChunkEnd => "chunk data not followed by CRLF",
            Error::BadChunkExtension => "chunk extension malformed (RFC 9112 7.1.1) or too long",
            Error::BadTrailer => "malformed or oversized trailer section",
            Error::BadStatusLine => "malformed status line",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_once_with_distinct_names() {
        let mut names: Vec<&str> = Error::ALL.iter().map(|e| e.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Error::ALL.len());
    }

    #[test]
    fn statuses_are_client_or_server_errors() {
        for e in Error::ALL {
            assert!((400..=505).contains(&e.status()), "{e:?}");
            assert!(!e.detail().is_empty());
        }
    }
}
