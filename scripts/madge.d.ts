/** The part of madge (which ships no types) that scripts/check-cycles.mjs uses. */
declare module "madge" {
  interface MadgeConfig {
    fileExtensions?: string[];
    /** Per parser: `{ ts: { skipTypeImports: false } }` counts `import type` too (madge's default). */
    detectiveOptions?: Record<string, Record<string, unknown>>;
  }
  interface MadgeResult {
    /** Each file, relative to the directory read, with the files it imports. */
    obj(): Record<string, string[]>;
    /** Each cycle of files, its first file not repeated at the end. */
    circular(): string[][];
  }
  export default function madge(path: string, config?: MadgeConfig): Promise<MadgeResult>;
}
