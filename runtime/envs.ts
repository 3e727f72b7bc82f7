/**
 * Dependency environments, cached by content hash: a Python venv per requirements set and a
 * `node_modules` tree per lockfile, shared by every deployment (and version) that asks for the
 * same dependencies on the same interpreter.
 *
 * Layout, under the envs folder (`paths().envs`):
 *
 * ```
 * python3-<12 hex>/     a venv: bin/python, lib/…, .prisn-env.json (written last)
 * node-<12 hex>/        package.json, package-lock.json, node_modules/, .prisn-env.json
 * .locks/<id>.lock      one flock per env id, held while that env is built or removed
 * ```
 *
 * An env is built in place, at its final path, under its lock, and only counts once its
 * `.prisn-env.json` marker exists. A folder without the marker is what a crashed build left
 * behind: the next `prepareEnv` for that id removes it and builds again. (A venv cannot be built
 * elsewhere and renamed in: its scripts' shebangs and `pyvenv.cfg` hold absolute paths.)
 *
 * This file holds the public names; the code is in runtime/envs/: cache.ts (the operations),
 * _plan.ts (which env a project needs, its id), _build.ts (venv and pip, npm), _files.ts (marker
 * and locks), _process.ts (running an installer), types.ts and errors.ts.
 *
 * @module
 */

export {
  environmentOf,
  envKey,
  linkNodeModules,
  listEnvs,
  needsEnv,
  prepareEnv,
  removeEnv,
} from "./envs/cache.ts";
export { InstallError } from "./envs/errors.ts";
export type { EnvKey, EnvKind, Interpreter, PreparedEnv, PrepareEnvOptions } from "./envs/types.ts";
