// The scenario bot on grammY, pointed at the telehook emulator.
//
// Modes (BOT_MODE): "polling" (bot.start), "webhook" (webhookCallback on node:http, every call
// over HTTP) and "webhook-reply" (the same, with canUseWebhookReply: the first eligible call of
// an update goes back in the webhook answer). With TLS_CERT/TLS_KEY set the webhook is served
// over https and the certificate uploaded with setWebhook.
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const https = require("node:https");
const { Bot, GrammyError, InlineKeyboard, InputFile, webhookCallback } = require("grammy");

const BASE_URL = process.env.TELEHOOK_BASE_URL;
const TOKEN = process.env.BOT_TOKEN;
const MODE = process.env.BOT_MODE;
const PHOTO = process.env.PHOTO_PATH;
const SECRET = process.env.WEBHOOK_SECRET || "client-suite-secret";
const REPLY = MODE === "webhook-reply";

// Methods grammY may put in a webhook reply; calls whose result the bot needs use bot.api,
// which never answers through the webhook.
const REPLY_METHODS = new Set(["sendMessage", "answerCallbackQuery", "answerInlineQuery", "deleteMessage"]);

const bot = new Bot(TOKEN, {
  client: {
    apiRoot: BASE_URL,
    canUseWebhookReply: REPLY ? (method) => REPLY_METHODS.has(method) : undefined,
  },
});

const failedOnce = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls `call()`; on 429 waits `retry_after` seconds and tries again (three tries). */
async function withRetry(call) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const wait = error instanceof GrammyError ? error.parameters.retry_after : undefined;
      if (wait === undefined || attempt === 2) throw error;
      await sleep(wait * 1000);
    }
  }
}

bot.command("copy", (ctx) => bot.api.copyMessage(ctx.chat.id, ctx.chat.id, ctx.msg.message_id));
bot.command("photo", (ctx) => bot.api.sendPhoto(ctx.chat.id, new InputFile(PHOTO), { caption: "photo" }));
bot.command("keyboard", (ctx) =>
  bot.api.sendMessage(ctx.chat.id, "choose", { reply_markup: new InlineKeyboard().text("A", "pick:a") }),
);
bot.command("delete", async (ctx) => {
  const sent = await bot.api.sendMessage(ctx.chat.id, "to delete");
  await ctx.api.deleteMessage(ctx.chat.id, sent.message_id);
});
bot.command("retry", (ctx) => withRetry(() => bot.api.sendMessage(ctx.chat.id, "retried")));
bot.command("chat", async (ctx) => {
  const info = await bot.api.getChat(ctx.chat.id);
  await bot.api.sendMessage(info.id, `chat ${info.id} ${info.type}`);
});
bot.command("fail", async (ctx) => {
  if (!failedOnce.has(ctx.update.update_id)) {
    failedOnce.add(ctx.update.update_id);
    throw new Error("failing on purpose, the first time this update comes");
  }
  await bot.api.sendMessage(ctx.chat.id, "recovered");
});
bot.callbackQuery(/^pick:(.*)$/, async (ctx) => {
  const picked = ctx.match[1];
  await ctx.answerCallbackQuery(`picked ${picked}`);
  await bot.api.editMessageText(ctx.chat.id, ctx.msg.message_id, `picked ${picked}`);
});
bot.on("inline_query", (ctx) =>
  ctx.answerInlineQuery(
    [{ type: "article", id: "1", title: ctx.inlineQuery.query, input_message_content: { message_text: ctx.inlineQuery.query } }],
    { cache_time: 0 },
  ),
);
bot.on("message:text", (ctx) => ctx.reply(ctx.msg.text));

bot.catch((error) => console.error("handler failed:", error.error));

async function main() {
  if (MODE === "polling") {
    await bot.start({ allowed_updates: ["message", "callback_query", "inline_query"] });
    return;
  }
  if (MODE !== "webhook" && MODE !== "webhook-reply") throw new Error(`unknown BOT_MODE ${MODE}`);
  const port = Number(process.env.WEBHOOK_PORT);
  const handle = webhookCallback(bot, "http", { secretToken: SECRET });
  // With a certificate: https, and the self-signed certificate uploaded with setWebhook.
  const tls = process.env.TLS_CERT && process.env.TLS_KEY
    ? { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) }
    : undefined;
  const listener = async (req, res) => {
    try {
      await handle(req, res);
    } catch (error) {
      // A failing handler: answer 500 so that Telegram delivers the update again.
      console.error("webhook handler failed:", error.error ?? error);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  };
  const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  await bot.init();
  await bot.api.setWebhook(`${tls ? "https" : "http"}://127.0.0.1:${port}/hook`, {
    secret_token: SECRET,
    allowed_updates: ["message", "callback_query", "inline_query"],
    certificate: tls ? new InputFile(process.env.TLS_CERT) : undefined,
  });
  console.log("webhook set");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
