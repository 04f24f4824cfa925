//! The reconnect policy: what a disconnect leads to, by close code and HTTP status
//! (PROTOCOL.md sections 8 and 9).

use super::error::{Disconnect, TokenReason};

/// What to do after a disconnect (PROTOCOL.md sections 8 and 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait (backoff with full jitter) and connect again.
    Retry,
    /// Get a new token first (if one can be had), then connect at once.
    NewToken(TokenReason),
    /// Stop for good.
    GiveUp,
}

/// The reconnect policy, by close code and HTTP status.
pub(crate) fn next_step(reason: &Disconnect) -> Next {
    match reason {
        // The server (or the application on it) ended the session on purpose.
        Disconnect::Close { code: 1000, .. } => Next::GiveUp,
        Disconnect::Close { code, .. } if (4000..=4999).contains(code) => Next::GiveUp,
        Disconnect::Close { code: 1008, reason } if reason == "token expired" => {
            Next::NewToken(TokenReason::Expired)
        }
        Disconnect::Refused { status: 401 } => Next::NewToken(TokenReason::Refused),
        // Another 4xx will not change by retrying (403: not allowed; 400, 404, 405,
        // 426, 431: a wrong URL or client), except a timeout and a rate limit.
        Disconnect::Refused { status } if (400..500).contains(status) => match status {
            408 | 429 => Next::Retry,
            _ => Next::GiveUp,
        },
        Disconnect::Token(_) => Next::GiveUp,
        // 1001, 1006, 1011, 1013, 1008 flooding, 5xx, refused TCP, timeouts.
        _ => Next::Retry,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn close(code: u16, reason: &str) -> Disconnect {
        Disconnect::Close {
            code,
            reason: reason.into(),
        }
    }

    #[test]
    fn the_reconnect_policy_follows_the_close_codes() {
        assert_eq!(next_step(&close(1000, "")), Next::GiveUp);
        assert_eq!(next_step(&close(4000, "kicked")), Next::GiveUp);
        assert_eq!(next_step(&close(4999, "")), Next::GiveUp);
        assert_eq!(
            next_step(&close(1008, "token expired")),
            Next::NewToken(TokenReason::Expired)
        );
        assert_eq!(next_step(&close(1008, "flooding")), Next::Retry);
        for code in [
            1001, 1002, 1005, 1006, 1007, 1009, 1011, 1012, 1013, 3000, 5000,
        ] {
            assert_eq!(next_step(&close(code, "")), Next::Retry, "{code}");
        }
        let refused = |status| Disconnect::Refused { status };
        assert_eq!(
            next_step(&refused(401)),
            Next::NewToken(TokenReason::Refused)
        );
        for status in [400, 403, 404, 405, 426, 431] {
            assert_eq!(next_step(&refused(status)), Next::GiveUp, "{status}");
        }
        for status in [408, 429, 500, 502, 503] {
            assert_eq!(next_step(&refused(status)), Next::Retry, "{status}");
        }
        assert_eq!(next_step(&Disconnect::IdleTimeout), Next::Retry);
        let io = crate::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(next_step(&Disconnect::Error(Arc::new(io))), Next::Retry);
    }
}
