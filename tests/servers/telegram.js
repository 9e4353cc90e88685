// telegram-test-api (npm): a Telegram Bot API emulator. The script also writes the
// messages bots sent to a file, for the test to read.
const fs = require("fs");
const TelegramServer = require("telegram-test-api");
// node telegram.js PORT OUT
const [port, out] = process.argv.slice(2);
const server = new TelegramServer({ port: Number(port), host: "127.0.0.1" });
server.start().then(() => {
  setInterval(() => fs.writeFileSync(out, JSON.stringify(server.storage.botMessages)), 100);
});
