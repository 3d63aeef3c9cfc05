import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['{operator,dataplane,api,cdk8s,hack}/**/*.test.ts', 'test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
})
