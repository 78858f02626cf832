import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Native fds, sockets and worker threads: forks keep every test file in its own process.
    pool: 'forks',
  },
});
