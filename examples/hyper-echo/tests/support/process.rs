//! Runs an example's binary as a real process on loopback, for the shutdown and slow-client
//! tests shared by every webhook example (`#[path]`-included by each one's tests).

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A bound for every wait, so a broken build fails instead of hanging (not a timed assertion:
/// each awaited event happens much sooner when things work).
pub const BOUND: Duration = Duration::from_secs(30);

pub const SECRET: &str = "s3cr3t_T0ken-for-tests";

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Server {
    /// Starts `binary` on an ephemeral port with `env`, and waits for its "listening" line.
    pub fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary)
            .env("PORT", "0")
            .env("TELEHOOK_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e}"));
        let (send, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if send.send(strip_ansi(&line)).is_err() {
                        break;
                    }
                }
            });
        }
        let mut server = Self {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            lines,
            log: Vec::new(),
        };
        let line = server.wait_for("listening");
        let port = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("address="))
            .and_then(|address| address.rsplit(':').next())
            .and_then(|port| port.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        server.addr = SocketAddr::from(([127, 0, 0, 1], port));
        server
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let until = Instant::now() + BOUND;
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit (bounded), collecting the rest of its log.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Read to the end of both pipes: the reader threads drop their senders at EOF,
                // so the channel disconnects once every line the process wrote is here. (A
                // pause of a fixed length lost the last lines on a loaded machine.)
                while let Ok(line) = self.lines.recv_timeout(BOUND) {
                    self.log.push(line);
                }
                return status;
            }
            while let Ok(line) = self.lines.try_recv() {
                self.log.push(line);
            }
            assert!(
                Instant::now() < until,
                "the process did not exit; log:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.log.iter().any(|l| l.contains(needle))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 exchange: the status and body, or `None` if the connection closed first.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

pub const TEXT_UPDATE: &str = r#"{"update_id":1001,"message":{"message_id":1,"date":0,"chat":{"id":42,"type":"private"},"text":"still there?"}}"#;

/// True if the server closed `stream` (EOF or reset) before [`BOUND`].
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an error response (408) before the close is fine
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The shutdown and slow-client cases every webhook example must pass. `binary` is the
/// example's `CARGO_BIN_EXE_…`; the example reads `ECHO_DELAY_MS`, `SHUTDOWN_DEADLINE_MS` and
/// `HEADER_READ_TIMEOUT_MS`.
pub mod cases {
    use super::*;

    pub fn sigterm_lets_the_update_in_flight_finish(binary: &str, path: &str) {
        let mut server = Server::start(binary, &[("ECHO_DELAY_MS", "1500")]);
        let addr = server.addr;
        let path = path.to_owned();
        let in_flight = std::thread::spawn(move || post(addr, &path, TEXT_UPDATE));
        server.wait_for("echo: waiting");
        server.signal("TERM");
        let answer = in_flight.join().unwrap();
        let status = server.wait_exit();
        let (code, body) = answer.unwrap_or_else(|| {
            panic!(
                "no answer to the update in flight; log:\n{}",
                server.log.join("\n")
            )
        });
        assert_eq!(code, 200, "{body}\n{}", server.log.join("\n"));
        assert!(body.contains("still there?"), "the echo reply: {body}");
        assert!(status.success(), "{status:?}\n{}", server.log.join("\n"));
        assert!(server.logged("echo: answered"), "{}", server.log.join("\n"));
        assert!(server.logged("shut down"), "{}", server.log.join("\n"));
    }

    pub fn the_deadline_ends_a_shutdown_a_run_would_block(binary: &str, path: &str) {
        let mut server = Server::start(
            binary,
            &[("ECHO_DELAY_MS", "600000"), ("SHUTDOWN_DEADLINE_MS", "300")],
        );
        let addr = server.addr;
        let path = path.to_owned();
        let _in_flight = std::thread::spawn(move || post(addr, &path, TEXT_UPDATE));
        server.wait_for("echo: waiting");
        server.signal("TERM");
        let status = server.wait_exit();
        assert!(
            !server.logged("echo: answered"),
            "{}",
            server.log.join("\n")
        );
        assert!(
            server.logged("deadline passed"),
            "{}",
            server.log.join("\n")
        );
        assert!(status.code().is_some(), "exited by itself: {status:?}");
    }

    pub fn a_second_signal_exits_at_once(binary: &str, path: &str) {
        let mut server = Server::start(
            binary,
            &[
                ("ECHO_DELAY_MS", "600000"),
                ("SHUTDOWN_DEADLINE_MS", "600000"),
            ],
        );
        let addr = server.addr;
        let path = path.to_owned();
        let _in_flight = std::thread::spawn(move || post(addr, &path, TEXT_UPDATE));
        server.wait_for("echo: waiting");
        server.signal("TERM");
        server.wait_for("a second signal exits at once");
        server.signal("INT");
        let status = server.wait_exit();
        assert_eq!(status.code(), Some(130), "{}", server.log.join("\n"));
        assert!(
            !server.logged("echo: answered"),
            "{}",
            server.log.join("\n")
        );
    }

    pub fn a_slowloris_connection_is_closed(binary: &str, path: &str) {
        let server = Server::start(binary, &[("HEADER_READ_TIMEOUT_MS", "1000")]);
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        // Half a request head, then nothing.
        write!(stream, "POST {path} HTTP/1.1\r\nHost: localhost\r\n").unwrap();
        assert!(
            closed_by_server(&mut stream),
            "the stalled connection is still open"
        );
        // An idle connection that never sends a byte is closed as well.
        let mut idle = TcpStream::connect(server.addr).expect("connect");
        assert!(
            closed_by_server(&mut idle),
            "the idle connection is still open"
        );
        // The server still answers.
        let (code, _) = post(server.addr, path, TEXT_UPDATE).expect("an answer");
        assert_eq!(code, 200);
    }
}
