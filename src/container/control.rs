//! The control protocol of a detached container's monitor, on `monitor.sock` in the
//! container's directory: one request line from a client (`status`, `attach [stdin]`, `stop
//! SECONDS SIGNAL`), then, on an attached connection, frames both ways (see [`frame`]).
//!
//! Both ends use these types: the monitor parses what `lifecycle` writes.

use std::time::Duration;

/// The monitor's control socket, in the container's directory.
pub const SOCKET: &str = "monitor.sock";

/// A client's request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The monitor's view of the container, as one JSON line (`Status`, `Pid`, ...).
    Status,
    /// Output (and the exit code) as frames from now on; with `stdin`, the client's input too.
    Attach { stdin: bool },
    /// Stop the container: `signal` now, SIGKILL after `timeout`; it stays down (no restart).
    Stop { timeout: Duration, signal: i32 },
}

impl Request {
    /// The request in a line (what a client writes, without the newline).
    pub fn line(&self) -> String {
        match self {
            Request::Status => "status".into(),
            Request::Attach { stdin: false } => "attach".into(),
            Request::Attach { stdin: true } => "attach stdin".into(),
            Request::Stop { timeout, signal } => format!("stop {} {signal}", timeout.as_secs()),
        }
    }

    /// A request line; `None` for an unknown request. `stop` without a valid timeout waits
    /// 10 s, and without a valid signal (1 to 64) sends SIGTERM, as Docker's defaults are.
    pub fn parse(line: &str) -> Option<Request> {
        let mut words = line.split_whitespace();
        match words.next()? {
            "status" => Some(Request::Status),
            "attach" => Some(Request::Attach {
                stdin: words.next() == Some("stdin"),
            }),
            "stop" => {
                let secs: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(10);
                let signal = words
                    .next()
                    .and_then(|w| w.parse().ok())
                    .filter(|n: &i32| (1..=64).contains(n))
                    .unwrap_or(nix::sys::signal::Signal::SIGTERM as i32);
                Some(Request::Stop {
                    timeout: Duration::from_secs(secs),
                    signal,
                })
            }
            _ => None,
        }
    }
}

/// Kinds of the frames on an attached control connection: a kind byte, a big-endian u32
/// length, the payload.
pub mod frame {
    /// Monitor → client: output of the container (the pty's, with `-t`).
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// Monitor → client: the container ended; the payload is its exit code in decimal.
    pub const EXIT: u8 = 3;
    /// Client → monitor: bytes for the container's stdin.
    pub const STDIN: u8 = 0;
    /// Client → monitor: the client's stdin ended (the container's stdin is closed).
    pub const STDIN_EOF: u8 = 4;
    /// Client → monitor: the client's window size, "ROWS COLS".
    pub const RESIZE: u8 = 5;

    /// One frame, encoded.
    pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(5 + payload.len());
        v.push(kind);
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// A RESIZE payload.
    pub fn resize(rows: u16, cols: u16) -> Vec<u8> {
        encode(RESIZE, format!("{rows} {cols}").as_bytes())
    }

    /// The rows and columns of a RESIZE payload.
    pub fn size(payload: &[u8]) -> Option<(u16, u16)> {
        let text = String::from_utf8_lossy(payload);
        let mut it = text.split_whitespace().map(|w| w.parse::<u16>().ok());
        match (it.next(), it.next()) {
            (Some(Some(rows)), Some(Some(cols))) => Some((rows, cols)),
            _ => None,
        }
    }

    /// Takes the first whole frame off `buf`, if there is one.
    pub fn decode(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
        if buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            return None;
        }
        let kind = buf[0];
        let payload = buf[5..5 + len].to_vec();
        buf.drain(..5 + len);
        Some((kind, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_default_as_docker() {
        for r in [
            Request::Status,
            Request::Attach { stdin: false },
            Request::Attach { stdin: true },
            Request::Stop {
                timeout: Duration::from_secs(3),
                signal: 34,
            },
        ] {
            assert_eq!(Request::parse(&r.line()), Some(r));
        }
        assert_eq!(
            Request::parse("stop"),
            Some(Request::Stop {
                timeout: Duration::from_secs(10),
                signal: 15
            })
        );
        assert_eq!(
            Request::parse("stop 5 99"),
            Some(Request::Stop {
                timeout: Duration::from_secs(5),
                signal: 15
            }),
            "a signal past 64 is not sent"
        );
        assert_eq!(Request::parse("reboot"), None);
        assert_eq!(Request::parse(""), None);
    }

    #[test]
    fn frames_come_off_a_stream_whole() {
        let mut buf = frame::encode(frame::STDOUT, b"hello");
        buf.extend(frame::resize(24, 80));
        buf.extend(&frame::encode(frame::EXIT, b"0")[..3]);
        assert_eq!(
            frame::decode(&mut buf),
            Some((frame::STDOUT, b"hello".to_vec()))
        );
        let (kind, payload) = frame::decode(&mut buf).unwrap();
        assert_eq!(
            (kind, frame::size(&payload)),
            (frame::RESIZE, Some((24, 80)))
        );
        assert_eq!(
            frame::decode(&mut buf),
            None,
            "half a frame waits for the rest"
        );
        buf.extend(&frame::encode(frame::EXIT, b"0")[3..]);
        assert_eq!(frame::decode(&mut buf), Some((frame::EXIT, b"0".to_vec())));
        assert!(buf.is_empty());
        assert_eq!(frame::size(b"x 80"), None);
    }
}
