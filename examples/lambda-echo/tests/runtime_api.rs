//! The function as a real process against a Lambda Runtime API stand-in on loopback: an
//! invocation whose deadline comes before the handler timeout is answered with `503` before
//! the deadline, and the handler sees the invocation's request id.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "s3cr3t_T0ken-for-tests";
const BOUND: Duration = Duration::from_secs(60);

/// What the function posted back.
#[derive(Debug)]
struct Posted {
    path: String,
    body: String,
    at: SystemTime,
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body) from a kept-alive connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, String)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

/// The Runtime API: the first `next` hands out `event` with a deadline `deadline_in` ahead;
/// later `next` calls wait forever (as Lambda's do between invocations); every POST is
/// reported on the channel.
fn runtime_api(event: String, deadline_in: Duration) -> (String, mpsc::Receiver<Posted>, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (report, posted) = mpsc::channel();
    let deadline = epoch_ms(SystemTime::now() + deadline_in);
    let handed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let report = report.clone();
            let event = event.clone();
            let handed_out = handed_out.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                while let Some((method, path, body)) = read_request(&mut reader) {
                    if method == "GET" && path.ends_with("/runtime/invocation/next") {
                        if handed_out.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_secs(3600));
                            return;
                        }
                        let _ = write!(
                            writer,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Lambda-Runtime-Aws-Request-Id: req-8d1f\r\n\
                             Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                             Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:eu-west-1:123456789012:function:lambda-echo\r\n\
                             Lambda-Runtime-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793\r\n\
                             Content-Length: {}\r\n\r\n{event}",
                            event.len()
                        );
                    } else {
                        let _ = report.send(Posted {
                            path,
                            body,
                            at: SystemTime::now(),
                        });
                        let _ = write!(
                            writer,
                            "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{{}}"
                        );
                    }
                }
            });
        }
    });
    (address, posted, deadline)
}

fn event() -> String {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/lambda/function_url_post.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_deadline_shorter_than_the_timeout_is_answered_503_before_it() {
    // Handler timeout 10 s (lambda_echo::TIMEOUT); the invocation ends in 2.5 s; the handler
    // would take 10 minutes.
    let (api, posted, deadline) = runtime_api(event(), Duration::from_millis(2500));
    let mut child = Command::new(env!("CARGO_BIN_EXE_lambda-echo"))
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "lambda-echo")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("TELEHOOK_SECRET", SECRET)
        .env("ECHO_DELAY_MS", "600000")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (log_send, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = log_send.send(line);
        }
    });
    let answer = posted.recv_timeout(BOUND);
    let _ = child.kill();
    let _ = child.wait();
    let log: Vec<String> = log.try_iter().collect();
    let answer = answer.unwrap_or_else(|_| panic!("no answer; log:\n{}", log.join("\n")));
    assert_eq!(
        answer.path, "/2018-06-01/runtime/invocation/req-8d1f/response",
        "{answer:?}"
    );
    let response: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(response["statusCode"], 503, "{response}");
    assert!(
        epoch_ms(answer.at) < deadline,
        "answered {} ms after the deadline",
        epoch_ms(answer.at) - deadline
    );
    assert!(
        log.iter()
            .any(|line| line.contains("echo: handling") && line.contains("req-8d1f")),
        "the handler logs the invocation's request id:\n{}",
        log.join("\n")
    );
}

/// `cargo run -p lambda-echo` outside Lambda: a clear error and exit code 1, not a panic
/// inside the Lambda runtime (exit code 101).
#[test]
fn outside_lambda_it_says_to_use_cargo_lambda_watch() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lambda-echo"));
    for name in telehook::lambda::RUNTIME_ENVIRONMENT {
        command.env_remove(name);
    }
    let output = command
        .env("TELEHOOK_SECRET", SECRET)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("not running on AWS Lambda") && stderr.contains("cargo lambda watch"),
        "{stderr}"
    );
}
