/**
 * The error of a dependency install that ran and failed.
 *
 * @module
 */

import { PrisnError } from "../../core/errors.ts";

/** An install that ran and failed; `detail` holds the last lines of the installer's output. */
export class InstallError extends PrisnError {
  override name = "InstallError";
  /** The last ~20 lines pip or npm printed. */
  readonly detail: string;
  constructor(message: string, detail: string) {
    super("FAILED", message, { cause: new Error(detail) });
    this.detail = detail;
  }
}
