/** The `node-kvm` command. */
import { checkCommand } from './check.js';

const USAGE = `usage: node-kvm <command> [options]

commands:
  check     can this host run KVM, and how well (--json for machine-readable output)
  run       boot a payload, firmware or Linux kernel (see: node-kvm run --help)
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'check':
      return checkCommand(rest);
    case 'run': {
      const { runCommand } = await import('./run.js');
      return runCommand(rest);
    }
    case undefined:
    case '-h':
    case '--help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`node-kvm: unknown command '${command}'\n${USAGE}`);
      return 2;
  }
}
