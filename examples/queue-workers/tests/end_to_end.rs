//! The whole example on loopback: updates POSTed over HTTP are answered 200 once stored, and
//! the workers handle every one in per-chat order; a wrong secret is refused and not stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use telehook_core::{Context, HandlerError, Update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(addr: std::net::SocketAddr, secret: &str, body: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /telegram HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         X-Telegram-Bot-Api-Secret-Token: {secret}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_stores_and_workers_handle_in_chat_order() {
    let dir = std::env::temp_dir().join(format!("queue-workers-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let queue = queue_workers::open_queue(&dir.join("q.sqlite3"), 3).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<(i64, u64)>>> = Arc::default();
    let all_seen = Arc::new(tokio::sync::Notify::new());
    let total = 40u64;
    let handler = {
        let (seen, all_seen) = (Arc::clone(&seen), Arc::clone(&all_seen));
        move |update: Update, _ctx: Context| {
            let mut seen = seen.lock().unwrap();
            seen.push((update.chat_id().unwrap(), update.update_id()));
            if seen.len() as u64 == total {
                all_seen.notify_one();
            }
            async { Ok::<_, HandlerError>(()) }
        }
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let server = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            queue_workers::run(
                listener,
                queue,
                Some("s3cret"),
                handler,
                telehook_polling::RunnerConfig::default(),
                async move {
                    stop.notified().await;
                },
            )
            .await
        }
    });
    let update = |id: u64| {
        format!(
            r#"{{"update_id":{id},"message":{{"message_id":{id},"date":1,"chat":{{"id":{},"type":"private"}},"text":"hi"}}}}"#,
            id % 4
        )
    };
    assert_eq!(post(addr, "wrong", &update(999)).await, 401);
    for id in 1..=total {
        assert_eq!(post(addr, "s3cret", &update(id)).await, 200);
    }
    // A redelivery of a stored update: 200, and it is not handled twice.
    assert_eq!(post(addr, "s3cret", &update(1)).await, 200);
    all_seen.notified().await;
    stop.notify_one();
    let report = server.await.unwrap().unwrap();
    assert_eq!(report.runs.len(), 3, "one worker per partition");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, total);
    let mut per_chat: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for (chat, id) in seen {
        per_chat.entry(chat).or_default().push(id);
    }
    for (chat, ids) in per_chat {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "chat {chat}: {ids:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
