#!/usr/bin/env node
// Entry point for `vfiod` (`node bin/vfiod.js` in a checkout, or the installed command): runs the compiled CLI (built by `npm install` via the `prepare` script).
import('../dist/cli/main.js').then(
  (cli) => cli.main(process.argv.slice(2)),
  (error) => {
    process.stderr.write(`vfiod: cannot load the compiled CLI (run 'npm install' first): ${error.message}\n`);
    process.exit(1);
  },
);
