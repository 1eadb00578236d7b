//! `actix-echo-bare-struct`: the echo written straight in actix-web, without telehook,
//! parsing the body into a small borrowed struct as a hand-written handler does
//! (`benches/http/echo_struct/bare.rs`). The baseline of `actix-echo-struct` in the HTTP
//! benchmark (`benches/http`). Serves `POST /telegram` on `PORT` (default 8080) and checks
//! `TELEHOOK_SECRET` if it is set.

#[path = "../../../../benches/http/echo_struct/bare.rs"]
mod bare;

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
    match bare::echo(&body) {
        Ok(Some(reply)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(reply),
        Ok(None) => HttpResponse::Ok().finish(),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let secret = web::Data::new(bare::secret());
    HttpServer::new(move || {
        App::new()
            .app_data(secret.clone())
            .route("/healthz", web::get().to(|| async { "ok" }))
            .route("/telegram", web::post().to(telegram))
    })
    .bind(("0.0.0.0", bare::port()))?
    .run()
    .await
}
