// Read GET /users/export (NDJSON) line by line from the response stream: users as they
// arrive, then the meta line. Checks: lines == meta.total, complete, unique ids, the same
// total as GET /users, and the same order as a full walk of GET /users.
//
//   GATEWAY_URL=http://127.0.0.1:8080 EXPECT_TOTAL=1980 node dist/examples/export.js
import assert from "node:assert/strict";
import { createUsersClient, fields } from "../src/index.js";
import { expectedNumber, gatewayFromEnv, run } from "./env.js";

const client = createUsersClient(gatewayFromEnv());

run("export", async () => {
  // 1. Everything.
  const ids = new Set<string>();
  let lines = 0;
  const started = Date.now();
  const meta = await client.forEachExported({}, (user) => {
    lines += 1;
    assert.ok(!ids.has(user.id), `user ${user.id} twice in the export`);
    ids.add(user.id);
  });
  console.log(`export: ${lines} users in ${Date.now() - started} ms, meta ${JSON.stringify({ complete: meta.complete, total: meta.total })}`);
  assert.equal(meta.complete, true, "meta.complete");
  assert.equal(lines, meta.total, "user lines == meta.total");
  const { meta: listMeta } = await client.listUsers({ per_page: 1 });
  assert.equal(meta.total, listMeta.total, "export total == GET /users meta.total");
  assert.deepEqual(
    meta.sources.map((s) => [s.source, s.status, s.total]),
    listMeta.sources.map((s) => [s.source, s.status, s.total]),
    "export meta.sources as GET /users meta.sources",
  );
  const expected = expectedNumber("EXPECT_TOTAL");
  if (expected !== undefined) assert.equal(meta.total, expected, "EXPECT_TOTAL");

  // 2. Filtered, sorted, with fields: the same users in the same order as walking /users.
  const query = { role: "learner", sort: ["-last_name" as const], fields: fields("email", "last_name") };
  const exported: string[] = [];
  const it = client.exportUsers(query);
  let r = await it.next();
  while (!r.done) {
    const user = r.value;
    assert.deepEqual(Object.keys(user).sort(), ["email", "id", "last_name"], `keys of ${user.id}`);
    exported.push(user.id);
    r = await it.next();
  }
  assert.equal(r.value.complete, true);
  assert.equal(exported.length, r.value.total);
  const walked: string[] = [];
  for await (const user of client.users(query, { per_page: 100 })) walked.push(user.id);
  assert.deepEqual(exported, walked, "export order == the order of a full walk of /users");
  console.log(`export: role=learner sort=-last_name fields=email,last_name: ${exported.length} users, same order as the /users walk`);

  // 3. Stopping early cancels the stream (no need to read the rest).
  let taken = 0;
  for await (const user of client.exportUsers({ fields: fields("email") })) {
    void user;
    if (++taken === 3) break;
  }
  assert.equal(taken, 3);
  console.log("export: breaking off after 3 users cancels the body");
});
