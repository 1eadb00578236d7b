//! `actix-echo-bare`: the same echo as `actix-echo` written straight in actix-web, without
//! telehook, as the baseline of the benchmark. Serves `POST /telegram` on `PORT` (default
//! 8080) and checks `TELEHOOK_SECRET` if it is set.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

async fn telegram(
    request: HttpRequest,
    body: web::Bytes,
    secret: web::Data<Option<String>>,
) -> HttpResponse {
    if let Some(secret) = secret.get_ref() {
        let given = request.headers().get("x-telegram-bot-api-secret-token");
        if given.map(|v| v.as_bytes()) != Some(secret.as_bytes()) {
            return HttpResponse::Unauthorized().finish();
        }
    }
    let Ok(update) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    match (
        update.pointer("/message/chat/id"),
        update
            .pointer("/message/text")
            .filter(|text| text.is_string()),
    ) {
        // The same bytes telehook's webhook reply has: `method` first, then the parameters.
        (Some(chat_id), Some(text)) => {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(format!(
                    r#"{{"method":"sendMessage","chat_id":{chat_id},"text":{text}}}"#
                ))
        }
        _ => HttpResponse::Ok().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080u16);
    let secret = web::Data::new(
        std::env::var("TELEHOOK_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
    );
    HttpServer::new(move || {
        App::new()
            .app_data(secret.clone())
            .route("/healthz", web::get().to(|| async { "ok" }))
            .route("/telegram", web::post().to(telegram))
    })
    .bind(("0.0.0.0", port))?
    .run()
    .await
}
