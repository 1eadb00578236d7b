//! The function binary under a stand-in for Vercel's runtime bridge on loopback: the bridge
//! listens on the Unix socket of `VERCEL_IPC_PATH`, where the runtime reports `server-started`
//! (with its HTTP port) and one `end` per invocation, and sends the invocations over HTTP with
//! the `x-vercel-internal-*` headers.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SECRET: &str = "s3cr3t_T0ken-for-tests";

/// A bound on every wait, so a broken runtime fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);

struct Function {
    child: Child,
    ipc: BufReader<UnixStream>,
    port: u16,
    socket: std::path::PathBuf,
}

impl Function {
    fn start(name: &str, timeout_ms: u64) -> Self {
        let socket =
            std::env::temp_dir().join(format!("vercel-echo-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).expect("bind the bridge socket");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_telegram"))
            .env("VERCEL_IPC_PATH", &socket)
            .env("VERCEL_DEV_PORT", port.to_string())
            .env("TELEHOOK_SECRET", SECRET)
            .env("TELEHOOK_TIMEOUT_MS", timeout_ms.to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the function");
        let (ipc, _) = listener
            .accept()
            .expect("the runtime connects to the bridge");
        ipc.set_read_timeout(Some(WAIT)).unwrap();
        let mut function = Self {
            child,
            ipc: BufReader::new(ipc),
            port,
            socket,
        };
        let started = function.next_message();
        assert_eq!(started["type"], "server-started", "{started}");
        assert_eq!(started["payload"]["httpPort"], port);
        function
    }

    /// The next NUL-terminated JSON message on the bridge socket.
    fn next_message(&mut self) -> Value {
        let mut message = Vec::new();
        self.ipc
            .read_until(0, &mut message)
            .expect("a message from the runtime");
        assert_eq!(message.pop(), Some(0), "the runtime closed the socket");
        serde_json::from_slice(&message).expect("a JSON message")
    }

    /// Waits for the `end` of `invocation`, skipping other messages.
    fn wait_end(&mut self, invocation: &str) {
        loop {
            let message = self.next_message();
            if message["type"] == "end"
                && message["payload"]["context"]["invocationId"] == invocation
            {
                return;
            }
        }
    }

    /// Sends one invocation and returns the status line and body.
    fn invoke(&self, invocation: &str, secret: &str, body: &str) -> (String, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "POST /api/telegram HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\
             x-telegram-bot-api-secret-token: {secret}\r\n\
             x-vercel-internal-invocation-id: {invocation}\r\nx-vercel-internal-request-id: 1\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("an answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        let status = head.lines().next().unwrap_or_default().to_owned();
        (status, body.to_owned())
    }

    /// Stops the function and returns what it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut log);
        }
        let _ = std::fs::remove_file(&self.socket);
        log
    }
}

fn text_update(update_id: u64, text: &str) -> String {
    serde_json::json!({
        "update_id": update_id,
        "message": {
            "message_id": 1, "date": 0, "text": text,
            "chat": { "id": 42, "type": "private", "first_name": "Ann" },
            "from": { "id": 42, "is_bot": false, "first_name": "Ann" }
        }
    })
    .to_string()
}

#[test]
fn an_invocation_is_echoed_by_webhook_reply_and_ends() {
    let mut function = Function::start("echo", 10_000);
    let (status, body) = function.invoke("inv-1", SECRET, &text_update(1, "hello"));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let reply: Value = serde_json::from_str(&body).expect("a webhook reply");
    assert_eq!(
        reply,
        serde_json::json!({"method": "sendMessage", "chat_id": 42, "text": "hello"})
    );
    function.wait_end("inv-1");
    let (status, _) = function.invoke("inv-2", "wrong", &text_update(2, "hello"));
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    function.wait_end("inv-2");
    function.stop();
}

#[test]
fn a_run_past_the_timeout_keeps_the_invocation_open_until_it_ends() {
    // The handler's timeout is 100 ms and `/slow` works for 1 s: `Return` answers 200 at the
    // timeout, and the invocation must not end (Vercel would freeze the instance) before the
    // run has finished.
    let mut function = Function::start("slow", 100);
    let (status, body) = function.invoke("inv-slow", SECRET, &text_update(3, "/slow"));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.is_empty(), "{body}");
    function.wait_end("inv-slow");
    // Stopped at once: the run's last log line is there only if it was written before `end`.
    let log = function.stop();
    assert!(log.contains("slow work finished"), "{log}");
}
