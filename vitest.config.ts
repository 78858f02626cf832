import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Deadlines for "eventually": long enough for a busy 2-core CI machine; a passing test never waits for them.
    testTimeout: 180_000,
    hookTimeout: 300_000,
    // Native fds, sockets and worker threads: forks keep every test file in its own process.
    pool: 'forks',
  },
});
