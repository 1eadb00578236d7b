"""The scenario bot on python-telegram-bot, pointed at the telehook emulator.

Modes (BOT_MODE): ``polling`` (``run_polling``) and ``webhook`` (``run_webhook``, PTB's own
tornado server; https with the certificate uploaded when TLS_CERT/TLS_KEY are set). What each message makes the bot do is described in tests/clients/README.md.
"""

import asyncio
import datetime
import logging
import os

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    Update,
)
from telegram.error import RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

BASE_URL = os.environ["TELEHOOK_BASE_URL"]
TOKEN = os.environ["BOT_TOKEN"]
MODE = os.environ["BOT_MODE"]
PHOTO = os.environ["PHOTO_PATH"]
SECRET = os.environ.get("WEBHOOK_SECRET", "client-suite-secret")

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)

failed_once: set[int] = set()


async def with_retry(call):
    """Calls ``call()``; on 429 waits ``retry_after`` seconds and tries again (three tries)."""
    for attempt in range(3):
        try:
            return await call()
        except RetryAfter as error:
            if attempt == 2:
                raise
            wait = error.retry_after
            if isinstance(wait, datetime.timedelta):
                wait = wait.total_seconds()
            await asyncio.sleep(float(wait))
    return None


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await context.bot.send_message(update.effective_chat.id, update.message.text)


async def copy(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat = update.effective_chat.id
    await context.bot.copy_message(chat, chat, update.message.message_id)


async def photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    with open(PHOTO, "rb") as file:
        await context.bot.send_photo(update.effective_chat.id, photo=file, caption="photo")


async def keyboard(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="pick:a")]])
    await context.bot.send_message(update.effective_chat.id, "choose", reply_markup=markup)


async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    picked = query.data.split(":", 1)[1]
    await query.answer(f"picked {picked}")
    await query.edit_message_text(f"picked {picked}")


async def inline(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.inline_query
    result = InlineQueryResultArticle(
        id="1", title=query.query, input_message_content=InputTextMessageContent(query.query)
    )
    await query.answer([result], cache_time=0)


async def delete(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    sent = await context.bot.send_message(update.effective_chat.id, "to delete")
    await sent.delete()


async def retry(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat = update.effective_chat.id
    await with_retry(lambda: context.bot.send_message(chat, "retried"))


async def chat(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    info = await context.bot.get_chat(update.effective_chat.id)
    await context.bot.send_message(info.id, f"chat {info.id} {info.type}")


async def fail(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.update_id not in failed_once:
        failed_once.add(update.update_id)
        raise RuntimeError("failing on purpose, the first time this update comes")
    await context.bot.send_message(update.effective_chat.id, "recovered")


def main() -> None:
    app = (
        Application.builder()
        .token(TOKEN)
        .base_url(f"{BASE_URL}/bot")
        .base_file_url(f"{BASE_URL}/file/bot")
        .build()
    )
    app.add_handler(CommandHandler("copy", copy))
    app.add_handler(CommandHandler("photo", photo))
    app.add_handler(CommandHandler("keyboard", keyboard))
    app.add_handler(CommandHandler("delete", delete))
    app.add_handler(CommandHandler("retry", retry))
    app.add_handler(CommandHandler("fail", fail))
    app.add_handler(CommandHandler("chat", chat))
    app.add_handler(CallbackQueryHandler(pressed, pattern="^pick:"))
    app.add_handler(InlineQueryHandler(inline))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    if MODE == "polling":
        app.run_polling(allowed_updates=Update.ALL_TYPES, close_loop=False)
    elif MODE == "webhook":
        port = int(os.environ["WEBHOOK_PORT"])
        # With a certificate PTB serves https and uploads the certificate with setWebhook.
        cert, key = os.environ.get("TLS_CERT"), os.environ.get("TLS_KEY")
        scheme = "https" if cert and key else "http"
        app.run_webhook(
            listen="127.0.0.1",
            port=port,
            url_path="hook",
            webhook_url=f"{scheme}://127.0.0.1:{port}/hook",
            secret_token=SECRET,
            allowed_updates=Update.ALL_TYPES,
            cert=cert if scheme == "https" else None,
            key=key if scheme == "https" else None,
            close_loop=False,
        )
    else:
        raise SystemExit(f"unknown BOT_MODE {MODE!r}")


if __name__ == "__main__":
    main()
