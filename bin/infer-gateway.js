#!/usr/bin/env node
// Runs the TypeScript sources through tsx's loader, so `npx infer-gateway` works from a checkout.
// Container images run the esbuild bundle instead (see Dockerfile).
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../hack/cli.ts')
const code = await main(process.argv.slice(2))
// A command may set process.exitCode itself; never turn its failure into success.
if (code !== 0 || !process.exitCode) process.exitCode = code
