/**
 * Deployment names: DNS labels.
 *
 * @module
 */

import { invalid } from "../errors.ts";

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Throws a one-line INVALID error unless `name` is a DNS label: 1-63 lowercase letters, digits or
 * '-', starting and ending with a letter or digit.
 */
export function validateName(name: string): void {
  if (!NAME_RE.test(name)) {
    // Quoted and escaped (one line whatever it holds), and cut: a name can be any length.
    const shown = JSON.stringify(name.length > 70 ? `${name.slice(0, 67)}...` : name);
    throw invalid(
      `name ${shown} is not valid: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
    );
  }
}
