/**
 * Namespaces: a deployment's name is unique within its namespace. Inside prisn a deployment is
 * known by its key, `NAMESPACE/NAME` (both DNS labels, so the key is unambiguous): records,
 * paths (deployments/NAMESPACE/NAME/…, logs/NAMESPACE/NAME/…), cluster KV keys and subjects all
 * carry it. Users see the namespace and the name apart.
 *
 * @module
 */

import { invalid } from "./errors.ts";

/** The namespace of everything not given one (and of every deployment made before namespaces). */
export const DEFAULT_NAMESPACE = "default";

const NAMESPACE_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Throws a one-line INVALID error unless `namespace` is a DNS label, as kubectl's: 1-63 lowercase
 * letters, digits or '-', starting and ending with a letter or digit.
 */
export function validateNamespace(namespace: string): string {
  if (!NAMESPACE_RE.test(namespace)) {
    throw invalid(
      `namespace "${namespace}" is not valid: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
    );
  }
  return namespace;
}

/** The key of deployment `name` in `namespace`. */
export function deploymentKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** A key's namespace and name; a bare name (a record older than namespaces) is in `default`. */
export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf("/");
  return slash < 0
    ? { namespace: DEFAULT_NAMESPACE, name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** The name part of a key. */
export function nameOf(key: string): string {
  return splitKey(key).name;
}

/** The namespace part of a key. */
export function namespaceOf(key: string): string {
  return splitKey(key).namespace;
}

/** A key as messages show it: the bare name in `default`, else `NAMESPACE/NAME`. */
export function displayKey(key: string): string {
  const { namespace, name } = splitKey(key);
  return namespace === DEFAULT_NAMESPACE ? name : `${namespace}/${name}`;
}

/** A key as one path segment or name token (`NAMESPACE.NAME`: neither part holds a '.'). */
export function flatKey(key: string): string {
  return key.replace("/", ".");
}
