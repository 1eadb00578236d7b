// The scenario bot on telegraf 4.16, pointed at the telehook emulator.
//
// Modes (BOT_MODE): "polling" (launch()), "webhook" (webhookReply off) and "webhook-reply"
// (telegraf's default: answerCallbackQuery, answerInlineQuery and deleteMessage go back in the
// webhook answer — telegraf's allow-list). With TLS_CERT/TLS_KEY set, the webhook modes use
// launch({webhook}) as documented: an https:// URL, the self-signed certificate uploaded with
// setWebhook. Without them, createWebhook's parts on plain http: setWebhook with an http://
// loopback URL and webhookCallback on node:http.
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const { Telegraf, Markup } = require("telegraf");

const BASE_URL = process.env.TELEHOOK_BASE_URL;
const TOKEN = process.env.BOT_TOKEN;
const MODE = process.env.BOT_MODE;
const PHOTO = process.env.PHOTO_PATH;
const SECRET = process.env.WEBHOOK_SECRET || "client-suite-secret";
const { TLS_CERT, TLS_KEY } = process.env;

const bot = new Telegraf(TOKEN, {
  telegram: { apiRoot: BASE_URL, webhookReply: MODE === "webhook-reply" },
});

const failedOnce = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls `call()`; on 429 waits `retry_after` seconds and tries again (three tries). */
async function withRetry(call) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const wait = error?.parameters?.retry_after ?? error?.response?.parameters?.retry_after;
      if (wait === undefined || attempt === 2) throw error;
      await sleep(wait * 1000);
    }
  }
}

bot.command("copy", (ctx) => ctx.telegram.copyMessage(ctx.chat.id, ctx.chat.id, ctx.message.message_id));
bot.command("photo", (ctx) => ctx.telegram.sendPhoto(ctx.chat.id, { source: PHOTO }, { caption: "photo" }));
bot.command("keyboard", (ctx) =>
  ctx.telegram.sendMessage(ctx.chat.id, "choose", Markup.inlineKeyboard([Markup.button.callback("A", "pick:a")])),
);
bot.command("delete", async (ctx) => {
  const sent = await ctx.telegram.sendMessage(ctx.chat.id, "to delete");
  await ctx.telegram.deleteMessage(ctx.chat.id, sent.message_id);
});
bot.command("retry", (ctx) => withRetry(() => ctx.telegram.sendMessage(ctx.chat.id, "retried")));
bot.command("chat", async (ctx) => {
  const info = await ctx.telegram.getChat(ctx.chat.id);
  await ctx.telegram.sendMessage(info.id, `chat ${info.id} ${info.type}`);
});
bot.command("fail", async (ctx) => {
  if (!failedOnce.has(ctx.update.update_id)) {
    failedOnce.add(ctx.update.update_id);
    throw new Error("failing on purpose, the first time this update comes");
  }
  await ctx.telegram.sendMessage(ctx.chat.id, "recovered");
});
bot.action(/^pick:(.*)$/, async (ctx) => {
  const picked = ctx.match[1];
  await ctx.answerCbQuery(`picked ${picked}`);
  await ctx.editMessageText(`picked ${picked}`);
});
bot.on("inline_query", (ctx) =>
  ctx.answerInlineQuery(
    [{ type: "article", id: "1", title: ctx.inlineQuery.query, input_message_content: { message_text: ctx.inlineQuery.query } }],
    { cache_time: 0 },
  ),
);
bot.on("text", (ctx) => ctx.telegram.sendMessage(ctx.chat.id, ctx.message.text));

// telegraf answers the webhook 200 even when a handler throws (then rethrows); answer 500
// instead, so that Telegram delivers the update again.
bot.catch((error, ctx) => {
  console.error("handler failed:", error);
  const res = ctx.telegram.response;
  if (res && !res.writableEnded) res.writeHead(500).end();
});

const ALLOWED = ["message", "callback_query", "inline_query"];

async function main() {
  if (MODE === "polling") {
    await bot.launch({ allowedUpdates: ALLOWED });
    return;
  }
  if (MODE !== "webhook" && MODE !== "webhook-reply") throw new Error(`unknown BOT_MODE ${MODE}`);
  const port = Number(process.env.WEBHOOK_PORT);
  if (TLS_CERT && TLS_KEY) {
    await bot.launch({
      allowedUpdates: ALLOWED,
      webhook: {
        domain: `127.0.0.1:${port}`,
        host: "127.0.0.1",
        port,
        path: "/hook",
        secretToken: SECRET,
        tlsOptions: { cert: fs.readFileSync(TLS_CERT), key: fs.readFileSync(TLS_KEY) },
        certificate: { source: TLS_CERT },
      },
    });
  } else {
    const server = http.createServer(bot.webhookCallback("/hook", { secretToken: SECRET }));
    await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
    bot.botInfo ??= await bot.telegram.getMe();
    await bot.telegram.setWebhook(`http://127.0.0.1:${port}/hook`, {
      secret_token: SECRET,
      allowed_updates: ALLOWED,
    });
  }
  console.log("webhook set");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
