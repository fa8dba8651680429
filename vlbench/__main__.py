from vlbench.cli.main import cli

cli()
