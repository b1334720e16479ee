// The dashboard is served by statim at /ui from ui/dist (embedded in the binary at build time).
// `npm run dev` serves it at localhost:5173 and forwards the API to a statim on :5000.
import { defineConfig } from "vite";

const api = ["/job", "/events", "/models", "/me", "/admin", "/metrics", "/nodes", "/healthz", "/version"];

export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    chunkSizeWarningLimit: 400,
  },
  server: { proxy: Object.fromEntries(api.map((p) => [p, "http://127.0.0.1:5000"])) },
});
