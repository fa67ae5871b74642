// A partial answer: one source failed, the other answered. GET /users is still 200, with
// meta.partial and, per source, status "error" and an error code. The walk helpers refuse
// such a page unless asked to take it (allowPartial), and the export says complete: false.
//
// Against a gateway over `users-gateway sandbox --tis-fault 500`:
//   GATEWAY_URL=… EXPECT_FAILED_SOURCE=tapintosafety EXPECT_ERROR_CODE=unavailable node dist/examples/partial.js
import assert from "node:assert/strict";
import { createUsersClient, PartialAnswerError } from "../src/index.js";
import { gatewayFromEnv, run } from "./env.js";

const client = createUsersClient(gatewayFromEnv());
const expectedSource = process.env.EXPECT_FAILED_SOURCE ?? "tapintosafety";
const expectedCode = process.env.EXPECT_ERROR_CODE ?? "unavailable";

run("partial", async () => {
  // 1. One page: served from the sources that answered, and it says which did not.
  const page = await client.listUsers({ per_page: 10 });
  const { meta } = page;
  const failed = meta.sources.filter((s) => s.status === "error");
  for (const s of failed) {
    console.log(`partial: source ${s.source} (${s.provider}) failed: ${s.error?.code}: ${s.error?.message}`);
  }
  assert.equal(meta.partial, true, "meta.partial");
  assert.deepEqual(failed.map((s) => s.source), [expectedSource], "the failed sources");
  assert.equal(failed[0]?.error?.code, expectedCode, "the error code");
  assert.equal(failed[0]?.total, null, "a failed source has no total");
  const ok = meta.sources.filter((s) => s.status === "ok");
  assert.ok(ok.length > 0, "some source answered");
  assert.equal(meta.total, ok.reduce((n, s) => n + (s.total ?? 0), 0), "meta.total counts only the sources that answered");
  assert.ok(page.data.length > 0, "the page has users");
  const okNames = new Set(ok.map((s) => s.source));
  for (const user of page.data) assert.ok(okNames.has(user.source), `user ${user.id} is from a source that answered`);
  console.log(`partial: page 1 has ${page.data.length} users of ${meta.total} from ${[...okNames].join(", ")}`);

  // 2. The walk helper does not pass a partial page off as the whole list.
  await assert.rejects(
    async () => {
      for await (const p of client.pages({}, { per_page: 100 })) void p;
    },
    (e: unknown) => e instanceof PartialAnswerError && e.failed.some((s) => s.source === expectedSource),
    "pages() throws PartialAnswerError naming the failed source",
  );
  // ...unless asked to: then every page says partial.
  let pages = 0;
  for await (const p of client.pages({}, { per_page: 100, allowPartial: true })) {
    assert.equal(p.meta.partial, true);
    pages += 1;
  }
  console.log(`partial: pages() refuses the partial walk; with allowPartial it reads ${pages} partial pages`);

  // 3. The export streams the other sources' users and ends with complete: false.
  let users = 0;
  const exportMeta = await client.forEachExported({}, () => {
    users += 1;
  });
  const exportFailed = exportMeta.sources.filter((s) => s.status === "error");
  console.log(
    `partial: export streamed ${users} users, complete=${exportMeta.complete}, failed: ${exportFailed.map((s) => `${s.source} ${s.error?.code}`).join(", ")}`,
  );
  assert.equal(exportMeta.complete, false, "export meta.complete");
  assert.deepEqual(exportFailed.map((s) => s.source), [expectedSource], "export: the failed sources");
  assert.equal(exportFailed[0]?.error?.code, expectedCode, "export: the error code");
  assert.equal(users, exportMeta.total, "export: users streamed == meta.total");
  assert.equal(users, meta.total, "export: as many users as the partial /users total");
});
