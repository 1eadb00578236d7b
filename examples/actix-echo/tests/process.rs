//! The actix echo bot as a real process on loopback: graceful shutdown on SIGTERM/SIGINT with a
//! deadline, and slow clients cut off.

#[path = "../../hyper-echo/tests/support/process.rs"]
mod process;

const BIN: &str = env!("CARGO_BIN_EXE_actix-echo");

#[test]
fn sigterm_lets_the_update_in_flight_finish() {
    process::cases::sigterm_lets_the_update_in_flight_finish(BIN, "/telegram");
}

#[test]
fn the_deadline_ends_a_shutdown_a_run_would_block() {
    process::cases::the_deadline_ends_a_shutdown_a_run_would_block(BIN, "/telegram");
}

#[test]
fn a_second_signal_exits_at_once() {
    process::cases::a_second_signal_exits_at_once(BIN, "/telegram");
}

#[test]
fn a_slowloris_connection_is_closed() {
    process::cases::a_slowloris_connection_is_closed(BIN, "/telegram");
}

/// Sends `request` on a kept-alive `stream` and reads one answer (head, then `Content-Length`
/// bytes): the status, or `None` if the server closed the connection instead.
fn exchange(stream: &mut std::net::TcpStream, request: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    stream.set_read_timeout(Some(process::BOUND)).unwrap();
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => answer.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Opens a connection and leaves it kept alive and idle after one answered request, as
/// Telegram keeps its connections open between deliveries.
fn kept_alive(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let code = exchange(
        &mut stream,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(code, Some(200));
    stream
}

/// An idle kept-alive connection does not hold the shutdown until its keep-alive (or the
/// deadline) runs out: once the run in flight is drained and answered, the server closes it
/// and the process exits. Both the keep-alive and the deadline are set far beyond the test's
/// bound, so only a prompt close lets the process exit in time.
#[test]
fn sigterm_closes_idle_kept_alive_connections_once_runs_are_drained() {
    let mut server = process::Server::start(
        BIN,
        &[
            ("ECHO_DELAY_MS", "1500"),
            ("SHUTDOWN_DEADLINE_MS", "600000"),
            ("KEEP_ALIVE_MS", "600000"),
        ],
    );
    let addr = server.addr;
    let mut idle = kept_alive(addr);
    let mut late = kept_alive(addr);
    let in_flight =
        std::thread::spawn(move || process::post(addr, "/telegram", process::TEXT_UPDATE));
    server.wait_for("echo: waiting");
    server.signal("TERM");
    server.wait_for("webhook draining");
    // A delivery on a kept-alive connection after the signal: `503` while the runs drain
    // (Telegram sends it again), or the connection is closed; one that raced the drain's
    // start may still be taken, and is then run and answered. Never run without an answer.
    let update = r#"{"update_id":1002,"message":{"message_id":2,"date":0,"chat":{"id":42,"type":"private"},"text":"late"}}"#;
    let late_code = exchange(
        &mut late,
        &format!(
            "POST /telegram HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             X-Telegram-Bot-Api-Secret-Token: {}\r\nContent-Length: {}\r\n\r\n{update}",
            process::SECRET,
            update.len()
        ),
    );
    let (code, body) = in_flight
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("no answer in flight; log:\n{}", server.log.join("\n")));
    assert_eq!(code, 200, "{body}\n{}", server.log.join("\n"));
    assert!(body.contains("still there?"), "the echo reply: {body}");
    assert!(
        process::closed_by_server(&mut idle),
        "the idle kept-alive connection is still open after the drain; log:\n{}",
        server.log.join("\n")
    );
    let status = server.wait_exit();
    let log = server.log.join("\n");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(server.logged("shut down: every request answered"), "{log}");
    assert!(!server.logged("deadline passed"), "{log}");
    let late_ran = server
        .log
        .iter()
        .any(|line| line.contains("echo: answered") && line.contains("update_id=1002"));
    assert!(
        matches!(late_code, None | Some(503)) || (late_code == Some(200) && late_ran),
        "the late delivery: {late_code:?}\n{log}"
    );
    assert_eq!(
        late_ran,
        late_code == Some(200),
        "run without its answer\n{log}"
    );
}
