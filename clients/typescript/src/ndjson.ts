// Reading `GET /users/export` (SPEC §12): NDJSON, one user a line, then one meta line.
//
// The body is read chunk by chunk from the fetch stream and split into lines as it comes;
// only the current partial line is held, never the whole body. The last line is
// `{"meta":{"complete":…,"total":…,"sources":[…]}}`; a stream that ends without it was cut.
import type { components } from "./schema.js";

type SourceStatus = components["schemas"]["SourceStatus"];

/** The export's final line is `{"meta": ExportMeta}` (`ExportEnd` in the document). */
export type ExportMeta = components["schemas"]["ExportMeta"];

/** The stream ended (or broke) before its meta line: the export was cut. */
export class ExportCutError extends Error {
  constructor(
    readonly usersRead: number,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`export stream cut after ${usersRead} users: ${reason}`, options);
    this.name = "ExportCutError";
  }
}

/** The stream holds something the export format does not allow (bad JSON, a line after the meta, …). */
export class ExportFormatError extends Error {
  constructor(
    readonly lineNumber: number,
    reason: string,
  ) {
    super(`export line ${lineNumber}: ${reason}`);
    this.name = "ExportFormatError";
  }
}

export interface NdjsonOptions {
  /** Longest line accepted, in UTF-16 code units (default 16 Mi): a guard against a runaway line. */
  maxLineLength?: number;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseMeta(value: unknown, lineNumber: number): ExportMeta {
  if (
    !isObject(value) ||
    typeof value.complete !== "boolean" ||
    typeof value.total !== "number" ||
    !Number.isInteger(value.total) ||
    !Array.isArray(value.sources)
  ) {
    throw new ExportFormatError(lineNumber, "meta line without complete (boolean), total (integer) and sources (array)");
  }
  return { complete: value.complete, total: value.total, sources: value.sources as SourceStatus[] };
}

/**
 * Yields each user line of an export body as it arrives and returns the meta line.
 * Throws {@link ExportCutError} when the body ends or fails before the meta line, and
 * {@link ExportFormatError} for a line that is not JSON, a user without a string `id`, a meta
 * line whose `total` is not the number of users streamed ("the users in the stream", also
 * when `complete` is false), or anything after the meta line.
 * Stopping early (`break`) cancels the body.
 */
export async function* readExportStream<U extends { id: string }>(
  body: ReadableStream<Uint8Array>,
  options: NdjsonOptions = {},
): AsyncGenerator<U, ExportMeta, undefined> {
  const maxLineLength = options.maxLineLength ?? 16 * 1024 * 1024;
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let pending = "";
  let lineNumber = 0;
  let users = 0;
  let meta: ExportMeta | undefined;
  let done = false;

  // One complete line (without its "\n"): a user, or the meta line.
  const take = (line: string): U | undefined => {
    lineNumber += 1;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line.trim() === "") return undefined;
    if (meta !== undefined) throw new ExportFormatError(lineNumber, "a line after the meta line");
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new ExportFormatError(lineNumber, `not JSON (${(e as Error).message})`);
    }
    if (isObject(value) && "meta" in value && !("id" in value)) {
      meta = parseMeta(value.meta, lineNumber);
      if (meta.total !== users) {
        throw new ExportFormatError(lineNumber, `meta.total is ${meta.total} but ${users} users were streamed`);
      }
      return undefined;
    }
    if (!isObject(value) || typeof value.id !== "string") {
      throw new ExportFormatError(lineNumber, "neither a user (an object with a string id) nor the meta line");
    }
    users += 1;
    return value as U;
  };

  try {
    while (true) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (cause) {
        throw new ExportCutError(users, `the body failed (${(cause as Error)?.message ?? String(cause)})`, { cause });
      }
      if (chunk.done) break;
      let text: string;
      try {
        text = decoder.decode(chunk.value, { stream: true });
      } catch {
        throw new ExportFormatError(lineNumber + 1, "not UTF-8");
      }
      let start = 0;
      let newline = text.indexOf("\n");
      while (newline !== -1) {
        const line = pending + text.slice(start, newline);
        pending = "";
        const user = take(line);
        if (user !== undefined) yield user;
        start = newline + 1;
        newline = text.indexOf("\n", start);
      }
      pending += text.slice(start);
      if (pending.length > maxLineLength) {
        throw new ExportFormatError(lineNumber + 1, `a line longer than ${maxLineLength} characters`);
      }
    }
    try {
      pending += decoder.decode();
    } catch {
      throw new ExportCutError(users, "the body ends inside a UTF-8 character");
    }
    // A last line without "\n" counts (the meta line may end the body without one).
    if (pending !== "") {
      const last = pending;
      pending = "";
      let user: U | undefined;
      try {
        user = take(last);
      } catch (e) {
        // An unterminated last line that does not parse is where the stream broke off.
        if (e instanceof ExportFormatError && meta === undefined) {
          throw new ExportCutError(users, "the body ends inside a line");
        }
        throw e;
      }
      if (user !== undefined) yield user;
    }
    done = true;
  } finally {
    // Early exit (the consumer broke off, or an error above): let the body go.
    if (!done) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
  if (meta === undefined) throw new ExportCutError(users, "no meta line at the end");
  return meta;
}
