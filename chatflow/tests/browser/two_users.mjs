// Two people chat through chatflow's browser client, each in a browser
// context of their own (headless Chromium): each sees the other's message,
// the typing indicator and the read receipt. Screenshots go to
// $SCREENSHOTS (default: ./screenshots).
//
//   CHATFLOW_BIN=target/debug/chatflow node two_users.mjs

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const bin = process.env.CHATFLOW_BIN;
if (!bin) throw new Error("set CHATFLOW_BIN to the chatflow binary");
const shots = process.env.SCREENSHOTS || join(process.cwd(), "screenshots");
mkdirSync(shots, { recursive: true });

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startChatflow() {
  const dir = mkdtempSync(join(tmpdir(), "chatflow-browser-"));
  const [http, kafka, registry] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(bin, [
    "serve",
    "--data-dir", join(dir, "data"),
    "--http", `127.0.0.1:${http}`,
    "--kafka-listen", `127.0.0.1:${kafka}`,
    "--registry", `127.0.0.1:${registry}`,
  ], { stdio: ["ignore", "pipe", openSync(join(dir, "chatflow.log"), "w")] });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("chatflow did not start in 120 s")), 120_000);
    child.stdout.on("data", (d) => {
      if (String(d).includes("chatflow is up")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`chatflow exited with ${code}`)));
  });
  return { base: `http://127.0.0.1:${http}`, child, dir };
}

async function login(browser, base, user) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    throw new Error(`${user}'s page: ${e.message}`);
  });
  await page.goto(base);
  await page.fill("#login-user", user);
  await page.click("#login-form button");
  await page.locator("#me", { hasText: user }).waitFor();
  return page;
}

const step = (what) => console.log(`  ✓ ${what}`);

const { base, child, dir } = await startChatflow();
let passed = false;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox"],
});
try {
  const alice = await login(browser, base, "alice");
  const bob = await login(browser, base, "bob");
  step("both signed in");

  // Alice starts a direct chat with bob and says hello while he is elsewhere.
  await alice.fill("#new-members", "bob");
  await alice.click("#new-form button");
  await alice.locator("#title", { hasText: "bob" }).waitFor();
  await alice.fill("#input", "Hello Bob, lunch today?");
  await alice.press("#input", "Enter");
  await alice.locator(".msg.mine .body", { hasText: "Hello Bob" }).waitFor();
  step("alice sent a message");

  // Bob sees the conversation with an unread badge, opens it, reads it.
  const entry = bob.locator("#conversations li", { hasText: "alice" });
  await entry.locator(".badge", { hasText: "1" }).waitFor();
  await bob.screenshot({ path: join(shots, "1-bob-unread.png") });
  await entry.click();
  await bob.locator(".msg .body", { hasText: "Hello Bob, lunch today?" }).waitFor();
  step("bob sees alice's message and its unread badge");

  // Alice sees that bob read it.
  await alice.locator(".msg.mine .status.read").waitFor();
  await alice.screenshot({ path: join(shots, "2-alice-read-receipt.png") });
  step("alice sees the read receipt");

  // Bob types: alice sees it; then he answers.
  await bob.click("#input");
  await bob.keyboard.type("Sure, at noon", { delay: 30 });
  await alice.locator("#typing", { hasText: "bob is typing" }).waitFor();
  await alice.screenshot({ path: join(shots, "3-alice-sees-typing.png") });
  step("alice sees bob typing");
  await bob.press("#input", "Enter");
  await alice.locator(".msg .body", { hasText: "Sure, at noon" }).waitFor();
  await bob.locator(".msg.mine .status.read").waitFor();
  step("bob's answer reached alice, and bob sees it read");

  // A reaction shows on both sides.
  await alice.locator(".msg", { hasText: "Sure, at noon" }).hover();
  await alice.locator(".msg", { hasText: "Sure, at noon" }).locator("button[title='react 👍']").click();
  await bob.locator(".msg.mine .reactions button", { hasText: "👍 1" }).waitFor();
  step("alice's reaction reached bob");

  // Alice sends a picture without a caption: bob sees it, loaded from its
  // expiring link.
  const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4zwAE/xkgFAAb8gP91pbyKwAAAABJRU5ErkJggg==",
    "base64",
  );
  await alice.setInputFiles("#file", { name: "dot.png", mimeType: "image/png", buffer: png });
  await alice.locator("#attached", { hasText: "dot.png" }).waitFor();
  await alice.press("#input", "Enter");
  const picture = bob.locator(".msg .files img[alt='dot.png']");
  await picture.waitFor();
  await bob.waitForFunction(
    () => [...document.querySelectorAll(".msg .files img")].some((i) => i.src.includes("/v1/uploads/") && i.complete && i.naturalWidth === 2),
  );
  step("alice's picture reached bob and loads");

  await alice.screenshot({ path: join(shots, "4-alice.png") });
  await bob.screenshot({ path: join(shots, "4-bob.png") });
  console.log(`browser test passed; screenshots in ${shots}`);
  passed = true;
} finally {
  if (!passed) console.error(readFileSync(join(dir, "chatflow.log"), "utf8").split("\n").slice(-40).join("\n"));
  await browser.close();
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  rmSync(dir, { recursive: true, force: true });
}
