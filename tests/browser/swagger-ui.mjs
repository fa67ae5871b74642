// Swagger UI (/docs) driven in a real headless Chromium, as a person would use it.
//
//   GATEWAY_URL        a `users-gateway --demo` without caller keys (required)
//   AUTH_GATEWAY_URL   a second one, started with GATEWAY_API_KEYS=$AUTH_KEY (required)
//   AUTH_KEY           that key (required)
//   CHROMIUM           the browser (default: `which chromium`; Debian's package, no download)
//   SCREENSHOT_DIR     where screenshots go (default <repo>/target/browser)
//   LIST_PROVIDER, LIST_ROLE, LIST_SORT, LIST_FIELDS, LIST_PER_PAGE   what is typed into
//                      GET /users (default tapintosafety, supervisor, last_name,
//                      email,last_name, 100; TIS roles are capitalized, so the role filter's
//                      case-insensitivity is exercised too; LIST_FIELDS= leaves fields out)
//
// Steps: open /docs; GET /users "Try it out" with a provider, a role, a sort and fields,
// Execute, and check the response panel: status 200, and exactly the users a reference
// computed here from the unfiltered list says (each with only id + the fields asked, all
// matching the filters, sorted by last_name case-insensitively, nulls last, ties by id).
// Then GET /users/{id} with one of those ids shows that user. Then on the gateway with a
// key: Execute without authorizing shows 401 problem+json; after the Authorize dialog, 200.
// A failing step saves a full-page screenshot SCREENSHOT_DIR/<step>.png and exits 1; success
// saves SCREENSHOT_DIR/success.png (the final screen: the authorized 200), success-full.png
// (the whole page) and the screen after each Execute (1-list-users, 2-get-user, 3-auth-401).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const screenshotDir = resolve(process.env.SCREENSHOT_DIR ?? join(here, "..", "..", "target", "browser"));
const gatewayUrl = required("GATEWAY_URL").replace(/\/+$/, "");
const authGatewayUrl = required("AUTH_GATEWAY_URL").replace(/\/+$/, "");
const authKey = required("AUTH_KEY");
const listProvider = process.env.LIST_PROVIDER ?? "tapintosafety";
const listRole = process.env.LIST_ROLE ?? "supervisor";
const listPerPage = Number(process.env.LIST_PER_PAGE ?? "100");
const listSort = process.env.LIST_SORT ?? "last_name";
const listFields = (process.env.LIST_FIELDS ?? "email,last_name").split(",").filter(Boolean);
const TIMEOUT_MS = 20_000;
const ALL_FIELDS = [
  "id", "source", "provider", "provider_id", "email", "username", "first_name", "last_name",
  "display_name", "role", "employee_id", "active", "created_at", "updated_at", "last_active_at",
];

function required(name) {
  const value = process.env[name];
  if (!value) fail("setup", `${name} is not set`);
  return value;
}

class StepError extends Error {}

function fail(stepName, message) {
  console.error(`browser test FAILED at step "${stepName}": ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) throw new StepError(message);
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Rust's `str` order (code points), not UTF-16 units. */
function compareCodePoints(a, b) {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return ca.done && cb.done ? 0 : ca.done ? -1 : 1;
    const d = ca.value.codePointAt(0) - cb.value.codePointAt(0);
    if (d !== 0) return d;
  }
}

/** SPEC §3 order for one string sort field: Unicode-lowercased, nulls last, ties by id. */
function sortOrder(field) {
  return (a, b) => {
    const ka = a[field] == null ? null : String(a[field]).toLowerCase();
    const kb = b[field] == null ? null : String(b[field]).toLowerCase();
    if (ka !== null && kb !== null && ka !== kb) return compareCodePoints(ka, kb);
    if (ka === null && kb !== null) return 1;
    if (ka !== null && kb === null) return -1;
    return compareCodePoints(a.id, b.id);
  };
}

// ---------------------------------------------------------------------------------------
mkdirSync(screenshotDir, { recursive: true });
const executablePath = process.env.CHROMIUM || which("chromium");
const userDataDir = mkdtempSync(join(tmpdir(), "users-gateway-chromium-"));
const consoleErrors = [];
let context;
let page;
let current = "launch";

function which(name) {
  try {
    return execFileSync("which", [name], { encoding: "utf8" }).trim();
  } catch {
    fail("launch", `${name} is not installed (apt-get install -y --no-install-recommends chromium)`);
  }
}

async function step(name, fn) {
  current = name;
  console.log(`- ${name}`);
  try {
    return await fn();
  } catch (e) {
    const shot = join(screenshotDir, `${name}.png`);
    let saved = "";
    if (page) {
      try {
        await page.screenshot({ path: shot, fullPage: true, timeout: 10_000 });
        saved = ` (screenshot: ${shot})`;
      } catch (se) {
        saved = ` (no screenshot: ${se.message.split("\n")[0]})`;
      }
    }
    if (consoleErrors.length) console.error(`browser console errors:\n  ${consoleErrors.join("\n  ")}`);
    await context?.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
    fail(name, `${e instanceof StepError ? e.message : e.stack ?? e}${saved}`);
  }
}

async function snapshot(name) {
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });
}

/** What a person looks at after Execute: from the curl line down to the answer, in a 1280x1400 window. */
async function screenOf(name, op) {
  await page.setViewportSize({ width: 1280, height: 1400 });
  const curl = op.locator(".curl-command");
  await ((await curl.count()) ? curl.first() : op.locator(".request-url")).evaluate((el) => el.scrollIntoView({ block: "start" }));
  await page.screenshot({ path: join(screenshotDir, `${name}.png`) });
}

/** The operation block of Swagger UI for an operationId (id `operations-<tag>-<operationId>`). */
function opblock(operationId) {
  return page.locator(`.opblock[id$="-${operationId}"]`);
}

async function expandAndTryOut(operationId) {
  const op = opblock(operationId);
  await op.waitFor();
  if (!(await op.evaluate((el) => el.classList.contains("is-open")))) {
    await op.locator(".opblock-summary-control").click();
  }
  const tryOut = op.locator("button.try-out__btn", { hasText: "Try it out" });
  await tryOut.click();
  await op.locator("button.btn.execute").waitFor();
  return op;
}

/** Types a value into a parameter row as a person would: a text box, or a (multi) select. */
async function fillParam(op, name, value) {
  const row = op.locator(`tr[data-param-name="${name}"]`);
  check((await row.count()) === 1, `GET parameter "${name}" is not in the Try it out form`);
  const select = row.locator("select");
  if ((await select.count()) > 0) {
    await select.first().selectOption(value.split(","));
    return;
  }
  const input = row.locator('input[type="text"], input:not([type])');
  check((await input.count()) >= 1, `parameter "${name}" has no text box`);
  await input.first().fill(value);
}

/**
 * Clicks Execute and returns what the response panel shows once it shows the answer the
 * network got: { status, body (parsed), text, url, network }.
 */
async function execute(op, urlPart) {
  // The answer, or Swagger UI refusing to send (its own validation of what was typed).
  const answered = page.waitForResponse((r) => r.request().method() === "GET" && r.url().includes(urlPart), { timeout: TIMEOUT_MS });
  const refused = op.locator(".validation-errors").waitFor({ timeout: TIMEOUT_MS }).then(async () => {
    const text = (await op.locator(".validation-errors").innerText()).replace(/\s+/g, " ");
    throw new StepError(`Swagger UI did not send the request: ${text}`);
  });
  answered.catch(() => {});
  refused.catch(() => {});
  await op.locator("button.btn.execute").click();
  const network = await Promise.race([answered, refused]);
  const status = network.status();
  const statusCell = op.locator(".live-responses-table tbody .response-col_status");
  await statusCell.filter({ hasText: new RegExp(`^\\s*${status}\\b`) }).waitFor({ timeout: TIMEOUT_MS });
  const shown = Number.parseInt((await statusCell.innerText()).trim(), 10);
  const code = op.locator(".live-responses-table tbody .response-col_description .highlight-code pre");
  await code.first().waitFor();
  const text = await code.first().textContent();
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new StepError(`the response panel does not show JSON (${e.message}): ${text.slice(0, 200)}`);
  }
  const url = (await op.locator(".request-url pre").textContent()).trim();
  const headers = (await op.locator(".live-responses-table .headerline").allTextContents()).map((h) => h.trim().toLowerCase());
  return { status: shown, body, text, url, network, headers };
}

// ---------------------------------------------------------------------------------------
await step("launch", async () => {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.setDefaultTimeout(TIMEOUT_MS);
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
  });
  page.on("pageerror", (err) => consoleErrors.push(`page error: ${err.message}`));
  console.log(`  chromium ${context.browser()?.version() ?? "(persistent context)"} at ${executablePath}`);
});

// The reference, computed without Swagger UI and without the gateway's filter and sort:
// every user of the provider (plain fetch, no filter, no sort), filtered and sorted here.
const reference = await step("reference", async () => {
  const all = [];
  for (let pageNo = 1; ; pageNo++) {
    const r = await fetch(`${gatewayUrl}/users?provider=${encodeURIComponent(listProvider)}&per_page=100&page=${pageNo}`);
    check(r.status === 200, `plain GET /users?provider=${listProvider} page ${pageNo}: ${r.status}`);
    const j = await r.json();
    all.push(...j.data);
    if (!j.meta.has_more) break;
  }
  const matching = all
    .filter((u) => u.role != null && u.role.toLowerCase() === listRole.toLowerCase())
    .sort(sortOrder(listSort));
  check(matching.length > 0, `no ${listProvider} user has role ${listRole}: pick another LIST_ROLE`);
  const firstPage = matching
    .slice(0, listPerPage)
    .map((u) => (listFields.length ? Object.fromEntries(["id", ...listFields].map((f) => [f, u[f]])) : u));
  const shown = matching.slice(0, listPerPage);
  const nulls = shown.filter((u) => u[listSort] == null).length;
  const keys = shown.filter((u) => u[listSort] != null).map((u) => String(u[listSort]).toLowerCase());
  const ties = keys.length - new Set(keys).size;
  const nonAscii = keys.filter((k) => /[^\x00-\x7f]/.test(k)).length;
  console.log(
    `  ${all.length} ${listProvider} users, ${matching.length} with role ${listRole}; page 1 holds ${firstPage.length}` +
      ` (${nulls} with ${listSort} null, ${ties} ties broken by id, ${nonAscii} non-ASCII ${listSort}s)`,
  );
  return { total: matching.length, firstPage, byId: new Map(all.map((u) => [u.id, u])) };
});

// The documented defaults of GET /users' parameters (what Swagger UI pre-fills).
const listDefaults = await step("document", async () => {
  const r = await fetch(`${gatewayUrl}/openapi.json`);
  check(r.status === 200, `GET /openapi.json: ${r.status}`);
  const doc = await r.json();
  const params = doc.paths["/users"].get.parameters;
  check(params.some((p) => p.name === "fields") || !listFields.length, "GET /users documents no `fields` parameter");
  return Object.fromEntries(params.filter((p) => p.schema?.default !== undefined).map((p) => [p.name, p.schema.default]));
});

await step("open-docs", async () => {
  await page.goto(`${gatewayUrl}/docs`);
  await opblock("list_users").waitFor();
  const title = await page.locator(".info .title").first().innerText();
  console.log(`  Swagger UI: ${title.split("\n")[0]}`);
});

let listed;
await step("list-users", async () => {
  const op = await expandAndTryOut("list_users");
  await fillParam(op, "provider", listProvider);
  await fillParam(op, "role", listRole);
  await fillParam(op, "sort", listSort);
  await fillParam(op, "per_page", String(listPerPage));
  if (listFields.length) await fillParam(op, "fields", listFields.join(","));
  const r = await execute(op, "/users?");
  console.log(`  Request URL: ${r.url}`);
  check(r.status === 200, `the panel shows status ${r.status}, not 200: ${r.text.slice(0, 300)}`);
  const url = new URL(r.url);
  check(url.pathname === "/users", `Request URL path ${url.pathname}`);
  const sent = Object.fromEntries(url.searchParams);
  const want = { per_page: String(listPerPage), provider: listProvider, role: listRole, sort: listSort, ...(listFields.length ? { fields: listFields.join(",") } : {}) };
  // Sent: what was typed, plus at most the parameters Swagger UI fills with their documented
  // `default` (page=1), which change nothing. An `example` pre-filled would show up here.
  for (const [k, v] of Object.entries(want)) check(sent[k] === v, `Swagger UI sent ${k}=${sent[k]}, typed ${v}`);
  for (const [k, v] of Object.entries(sent)) {
    if (k in want) continue;
    const d = listDefaults[k];
    check(d !== undefined && String(d) === v, `Swagger UI sent ${k}=${v}, which was not typed in and is not its default (${d})`);
  }

  const { data, meta } = r.body;
  check(Array.isArray(data) && data.length > 0, "the panel shows no users");
  const wantKeys = ["id", ...listFields.length ? listFields : ALL_FIELDS.slice(1)].sort();
  for (const u of data) {
    check(sameJson(Object.keys(u).sort(), wantKeys), `user ${u.id} has keys ${Object.keys(u).sort()}, want exactly ${wantKeys}`);
    check(typeof u.id === "string" && u.id.startsWith(`${listProvider}:`), `user ${u.id} is not from ${listProvider}`);
    const full = reference.byId.get(u.id);
    check(full !== undefined, `user ${u.id} is not among the ${listProvider} users`);
    check(full.role?.toLowerCase() === listRole.toLowerCase(), `user ${u.id} has role ${full.role}, filter role=${listRole}`);
    for (const f of listFields) check(sameJson(u[f], full[f]), `user ${u.id}: ${f} is ${JSON.stringify(u[f])}, the user has ${JSON.stringify(full[f])}`);
  }
  const order = sortOrder(listSort);
  const keyed = data.map((u) => ({ id: u.id, [listSort]: reference.byId.get(u.id)[listSort] }));
  for (let i = 1; i < keyed.length; i++) {
    check(order(keyed[i - 1], keyed[i]) < 0, `not sorted by ${listSort}: ${JSON.stringify(keyed[i - 1])} before ${JSON.stringify(keyed[i])}`);
  }
  check(meta.total === reference.total, `meta.total ${meta.total}, the reference counts ${reference.total}`);
  check(meta.page === 1 && meta.per_page === listPerPage && meta.partial === false, `meta ${JSON.stringify(meta)}`);
  check(sameJson(data, reference.firstPage), `the users shown are not the reference's first page:\n  shown ${JSON.stringify(data.map((u) => u.id))}\n  want  ${JSON.stringify(reference.firstPage.map((u) => u.id))}`);
  const network = await r.network.json();
  check(sameJson(network, r.body), "the panel's body differs from the body the browser received");
  console.log(`  200: ${data.length} of ${meta.total} users, keys ${wantKeys.join(",")}, all ${listProvider} with role ${listRole}, sorted by ${listSort}, == the reference`);
  listed = data;
  await screenOf("1-list-users", op);
});

await step("get-user", async () => {
  const pick = listed[Math.min(1, listed.length - 1)];
  const op = await expandAndTryOut("get_user");
  await fillParam(op, "id", pick.id);
  const r = await execute(op, "/users/");
  console.log(`  Request URL: ${r.url}`);
  check(r.status === 200, `the panel shows status ${r.status}, not 200: ${r.text.slice(0, 300)}`);
  check(decodeURIComponent(new URL(r.url).pathname) === `/users/${pick.id}`, `Request URL ${r.url} is not /users/${pick.id}`);
  check(r.body.id === pick.id, `the panel shows user ${r.body.id}, asked for ${pick.id}`);
  check(sameJson(Object.keys(r.body).sort(), [...ALL_FIELDS].sort()), `GET /users/{id} keys ${Object.keys(r.body)}`);
  check(sameJson(r.body, reference.byId.get(pick.id)), "GET /users/{id} shows another record than the list has for that id");
  for (const f of listFields) check(sameJson(r.body[f], pick[f]), `${f}: ${JSON.stringify(r.body[f])} here, ${JSON.stringify(pick[f])} in the list`);
  console.log(`  200: ${r.body.id} (${r.body.display_name}, ${r.body.email}, role ${r.body.role})`);
  await screenOf("2-get-user", op);
});

await step("auth-401", async () => {
  await page.goto(`${authGatewayUrl}/docs`);
  await opblock("list_users").waitFor();
  const op = await expandAndTryOut("list_users");
  const r = await execute(op, "/users");
  check(r.status === 401, `without a key the panel shows ${r.status}, not 401`);
  check(r.network.request().headers().authorization === undefined, "an Authorization header was sent before authorizing");
  const ct = r.headers.find((h) => h.startsWith("content-type:"));
  check(ct?.includes("application/problem+json"), `the 401 panel shows ${ct ?? "no content-type"}, not application/problem+json`);
  check(r.body.status === 401 && typeof r.body.title === "string" && typeof r.body.detail === "string" && typeof r.body.type === "string", `not a problem document: ${r.text}`);
  const www = r.headers.find((h) => h.startsWith("www-authenticate:"));
  check(www?.includes("bearer"), `the 401 shows no WWW-Authenticate: Bearer (${www})`);
  console.log(`  401 ${ct}: ${r.body.title}: ${r.body.detail}`);
  await screenOf("3-auth-401", op);
});

await step("authorize", async () => {
  await page.locator(".auth-wrapper button.btn.authorize").click();
  const modal = page.locator(".modal-ux");
  await modal.waitFor();
  const scheme = modal.locator(".auth-container", { hasText: "bearer" });
  await scheme.first().waitFor();
  await modal.locator("#auth-bearer-value").fill(authKey);
  await modal.locator("button.btn.modal-btn.auth.authorize").click();
  await modal.locator("button", { hasText: "Logout" }).waitFor();
  await modal.locator("button.btn-done").click();
  await modal.waitFor({ state: "detached" });
  await page.locator(".auth-wrapper button.btn.authorize.locked").waitFor();
});

await step("auth-200", async () => {
  const op = opblock("list_users");
  const r = await execute(op, "/users");
  check(r.network.request().headers().authorization === `Bearer ${authKey}`, `sent Authorization: ${r.network.request().headers().authorization}`);
  check(r.status === 200, `after Authorize the panel shows ${r.status}, not 200: ${r.text.slice(0, 300)}`);
  const { data, meta } = r.body;
  check(Array.isArray(data) && meta.total > 0 && data.length === Math.min(25, meta.total), `after Authorize: ${data?.length} users of ${meta?.total}`);
  console.log(`  200 with the key: ${r.body.data.length} of ${r.body.meta.total} users`);
});

await step("success", async () => {
  // success.png: the screen a person sees at the end (the authorized request and its 200);
  // success-full.png: the whole page.
  await page.setViewportSize({ width: 1280, height: 1400 });
  // From the curl line (it shows the Authorization header sent) down to the 200 and its body.
  await screenOf("success", opblock("list_users"));
  await snapshot("success-full");
  if (consoleErrors.length) console.log(`  (browser console errors, not fatal:\n    ${consoleErrors.join("\n    ")})`);
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
  console.log(`browser test passed; screenshots in ${screenshotDir}`);
});
