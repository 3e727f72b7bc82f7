/** The git commit of a release build; tools/compile.ts rewrites this file while it compiles. */
export const BUILD_COMMIT = "source";
