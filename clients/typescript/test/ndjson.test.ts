// The export reader on hand-made streams: chunk boundaries anywhere (inside a line, inside a
// UTF-8 character), a cut stream, a broken body, lines after the meta, early exit.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ExportCutError, ExportFormatError, readExportStream, type ExportMeta } from "../src/ndjson.js";

const enc = new TextEncoder();

function streamOf(chunks: Uint8Array[], failAtEnd?: Error): ReadableStream<Uint8Array> & { cancelled: () => boolean } {
  let i = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]!);
      else if (failAtEnd) controller.error(failAtEnd);
      else controller.close();
    },
    cancel() {
      cancelled = true;
    },
  });
  return Object.assign(stream, { cancelled: () => cancelled });
}

/** The bytes cut into pieces of `size` (so boundaries fall inside lines and characters). */
function pieces(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.slice(i, i + size));
  return out;
}

async function readAll(body: ReadableStream<Uint8Array>): Promise<{ ids: string[]; meta: ExportMeta }> {
  const ids: string[] = [];
  const it = readExportStream<{ id: string }>(body);
  for (let r = await it.next(); ; r = await it.next()) {
    if (r.done) return { ids, meta: r.value };
    ids.push(r.value.id);
  }
}

const users = [
  { id: "thoughtindustries:1", display_name: "Zoë Jones" },
  { id: "tapintosafety:2", display_name: "名前 🎉" },
  { id: "tapintosafety:3", display_name: "O'Brien" },
];
const metaLine = { meta: { complete: true, total: 3, sources: [{ source: "tapintosafety", provider: "tapintosafety", status: "ok", total: 3 }] } };
const body = users.map((u) => JSON.stringify(u) + "\n").join("") + JSON.stringify(metaLine) + "\n";

test("every chunking of the same body reads the same users and meta", async () => {
  const bytes = enc.encode(body);
  for (const size of [1, 2, 3, 5, 7, 13, 64, bytes.length]) {
    const { ids, meta } = await readAll(streamOf(pieces(bytes, size)));
    assert.deepEqual(ids, users.map((u) => u.id), `chunks of ${size}`);
    assert.deepEqual(meta, metaLine.meta);
  }
});

test("a meta line without a final newline, and CRLF line ends, are read", async () => {
  const crlf = body.replaceAll("\n", "\r\n").replace(/\r\n$/, "");
  const { ids, meta } = await readAll(streamOf([enc.encode(crlf)]));
  assert.equal(ids.length, 3);
  assert.equal(meta.complete, true);
});

test("a stream without the meta line is cut", async () => {
  const cut = users.map((u) => JSON.stringify(u) + "\n").join("");
  await assert.rejects(readAll(streamOf([enc.encode(cut)])), (e) => e instanceof ExportCutError && e.usersRead === 3);
});

test("a stream that ends inside a line is cut", async () => {
  const cut = body.slice(0, body.indexOf("O'Brien"));
  await assert.rejects(readAll(streamOf([enc.encode(cut)])), (e) => e instanceof ExportCutError && e.usersRead === 2);
});

test("an empty body is cut", async () => {
  await assert.rejects(readAll(streamOf([])), (e) => e instanceof ExportCutError && e.usersRead === 0);
});

test("a body that fails mid-way is cut, with the cause", async () => {
  const bytes = enc.encode(body);
  const reset = new Error("socket hang up");
  await assert.rejects(
    readAll(streamOf([bytes.slice(0, 40)], reset)),
    (e) => e instanceof ExportCutError && e.cause === reset,
  );
});

test("a line after the meta line, or a meta whose total is wrong, is a format error", async () => {
  await assert.rejects(readAll(streamOf([enc.encode(body + JSON.stringify(users[0]) + "\n")])), ExportFormatError);
  const wrong = body.replace('"total":3,"sources"', '"total":4,"sources"');
  await assert.rejects(readAll(streamOf([enc.encode(wrong)])), ExportFormatError);
});

test("an incomplete export is read to its meta line, and its total counts the users streamed", async () => {
  const incomplete = (total: number) => JSON.stringify({ meta: { complete: false, total, sources: [] } }) + "\n";
  const lines = users.map((u) => JSON.stringify(u) + "\n").join("");
  const { meta } = await readAll(streamOf([enc.encode(lines + incomplete(3))]));
  assert.equal(meta.complete, false);
  await assert.rejects(readAll(streamOf([enc.encode(lines + incomplete(5))])), ExportFormatError);
});

test("a line that is not JSON, or not a user, is a format error", async () => {
  await assert.rejects(readAll(streamOf([enc.encode("{nope\n")])), ExportFormatError);
  await assert.rejects(readAll(streamOf([enc.encode('{"name":"x"}\n')])), ExportFormatError);
  await assert.rejects(readAll(streamOf([enc.encode('{"meta":{"complete":"yes"}}\n')])), ExportFormatError);
});

test("invalid UTF-8 is a format error", async () => {
  await assert.rejects(readAll(streamOf([new Uint8Array([0x7b, 0xff, 0x7d, 0x0a])])), ExportFormatError);
});

test("a runaway line is refused without holding it all", async () => {
  const it = readExportStream(streamOf(pieces(enc.encode('{"id":"' + "x".repeat(5000)), 100)), { maxLineLength: 1000 });
  await assert.rejects(it.next(), ExportFormatError);
});

test("breaking off early cancels the body", async () => {
  const stream = streamOf(pieces(enc.encode(body), 10));
  for await (const user of readExportStream(stream)) {
    void user;
    break;
  }
  assert.equal(stream.cancelled(), true);
});
