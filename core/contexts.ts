/**
 * The CLI's contexts, as kubectl's kubeconfig: named remote agents (server URL, token, CA file)
 * and the current one, in `$XDG_CONFIG_HOME/prisn/contexts.toml` (else
 * `~/.config/prisn/contexts.toml`), mode 0600 since it holds tokens.
 * @module
 */
import { dirname, join } from "node:path";
import { parse, stringify } from "smol-toml";
import { invalid, notFound } from "./errors.ts";
import { readConfigFile, writePrivate } from "./fs.ts";
import { validateName } from "./prisn_toml.ts";
import { validateNamespace } from "./namespace.ts";

/** One remote agent. */
export interface Context {
  /** https://host:port (or http:// on loopback). */
  server: string;
  token: string;
  /** A PEM CA file the server's certificate is checked against. @default the system's roots */
  ca?: string;
  /** The namespace commands address when they are given no -n. @default "default" */
  namespace?: string;
}

interface ContextsFile {
  current?: string;
  contexts: Record<string, Context>;
}

/** Where the contexts live. */
export function contextsFile(): string {
  const xdg = Deno.env.get("XDG_CONFIG_HOME");
  const home = Deno.env.get("HOME") ?? ".";
  return join(xdg || join(home, ".config"), "prisn", "contexts.toml");
}

/** Throws a one-line INVALID error unless `server` is an http(s) URL with nothing after the host. */
export function validateServer(server: string, what = "--server"): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw invalid(`${what} "${server}" is not a URL: give https://HOST:PORT`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw invalid(`${what} "${server}" is not http(s): give https://HOST:PORT`);
  }
  if (url.pathname !== "/" || url.search || url.hash || url.username) {
    throw invalid(`${what} "${server}" has more than a host and port: give https://HOST:PORT`);
  }
  return url.origin;
}

/** The contexts file: read at open, written (0600) by every change. */
export class Contexts {
  private constructor(readonly file: string, private data: ContextsFile) {}

  static async open(file: string = contextsFile()): Promise<Contexts> {
    const text = await readConfigFile(file, { label: file });
    if (text === undefined) return new Contexts(file, { contexts: {} });
    let raw: Record<string, unknown>;
    try {
      raw = parse(text);
    } catch (e) {
      throw invalid(`${file} is not valid TOML: ${(e as Error).message.split("\n")[0]}`);
    }
    const contexts = (raw.contexts ?? {}) as Record<string, Context>;
    for (const [name, c] of Object.entries(contexts)) {
      if (typeof c?.server !== "string" || typeof c?.token !== "string") {
        throw invalid(`${file}: context "${name}" needs a server and a token`);
      }
    }
    const current = typeof raw.current === "string" ? raw.current : undefined;
    return new Contexts(file, { current, contexts });
  }

  get current(): string | undefined {
    return this.data.current;
  }

  list(): Array<{ name: string; current: boolean } & Context> {
    return Object.entries(this.data.contexts).map(([name, c]) => ({
      name,
      current: name === this.data.current,
      ...c,
    }));
  }

  /** The named context. @throws PrisnError NOT_FOUND naming the file. */
  get(name: string): Context {
    const c = this.data.contexts[name];
    if (!c) throw notFound(`context "${name}" not found in ${this.file}: see prisn context ls`);
    return c;
  }

  /** Adds or replaces a context; the first one added becomes current. */
  async add(name: string, context: Context): Promise<void> {
    validateName(name);
    const entry: Context = { server: validateServer(context.server), token: context.token };
    if (!context.token) throw invalid("give the context a token: --token T");
    if (context.ca) entry.ca = context.ca;
    if (context.namespace) entry.namespace = validateNamespace(context.namespace);
    this.data.contexts[name] = entry;
    this.data.current ??= name;
    await this.#save();
  }

  async use(name: string): Promise<void> {
    this.get(name);
    this.data.current = name;
    await this.#save();
  }

  async remove(name: string): Promise<void> {
    this.get(name);
    delete this.data.contexts[name];
    if (this.data.current === name) delete this.data.current;
    await this.#save();
  }

  async #save(): Promise<void> {
    await Deno.mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const { current, contexts } = this.data;
    await writePrivate(this.file, stringify(current ? { current, contexts } : { contexts }) + "\n");
  }
}
