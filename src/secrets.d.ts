// Secrets are not in wrangler.toml, so `wrangler types` cannot see them.
declare namespace Cloudflare {
  interface Env {
    /** Enables the admin API and dashboard; compared in constant time. */
    ADMIN_TOKEN?: string;
  }
}
