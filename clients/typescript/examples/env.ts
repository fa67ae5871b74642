// Where the examples find the gateway: GATEWAY_URL (default http://127.0.0.1:8080) and,
// when the gateway has GATEWAY_API_KEYS, GATEWAY_API_KEY.
import type { UsersClientOptions } from "../src/index.js";

export function gatewayFromEnv(): UsersClientOptions {
  const baseUrl = process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";
  const apiKey = process.env.GATEWAY_API_KEY;
  return apiKey ? { baseUrl, apiKey } : { baseUrl };
}

/** An optional expected number from the environment (e.g. EXPECT_TOTAL=1980 against --demo). */
export function expectedNumber(name: string): number | undefined {
  const value = process.env[name];
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(value)}`);
  return n;
}

/** Runs an example: prints its failure and exits 1, so a script running it stops. */
export function run(name: string, main: () => Promise<void>): void {
  main().then(
    () => console.log(`${name}: ok`),
    (e: unknown) => {
      console.error(`${name}: FAILED`);
      console.error(e);
      process.exitCode = 1;
    },
  );
}

/** Compares strings by Unicode code point (as Rust orders `str`), not by UTF-16 unit. */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  while (true) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return ca.done && cb.done ? 0 : ca.done ? -1 : 1;
    const d = ca.value.codePointAt(0)! - cb.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/**
 * The gateway's order for `sort=<field>` over one string field (SPEC §3): case-insensitive
 * (Unicode lowercase), nulls last, ties by id ascending. True when `a` may come before `b`.
 */
export function inSortOrder(a: { id: string; key: string | null }, b: { id: string; key: string | null }): boolean {
  const ka = a.key?.toLowerCase() ?? null;
  const kb = b.key?.toLowerCase() ?? null;
  if (ka !== null && kb !== null && ka !== kb) return compareCodePoints(ka, kb) < 0;
  if (ka === null && kb !== null) return false;
  if (ka !== null && kb === null) return true;
  return compareCodePoints(a.id, b.id) < 0;
}
