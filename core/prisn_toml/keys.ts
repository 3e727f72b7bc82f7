/**
 * The keys prisn.toml accepts.
 *
 * @module
 */

import { TABLES, TOP } from "./_schema.ts";

/**
 * Every key prisn.toml accepts, in file order; keys of tables are dotted ("resources.memory").
 * docs/prisn-toml.md documents each one.
 */
export const PRISN_TOML_KEYS: readonly string[] = Object.keys(TOP.shape).flatMap((key) => [
  key,
  ...Object.keys(TABLES[key]?.shape ?? {}).map((sub) => `${key}.${sub}`),
]);
