from infer_cli.cli import main

main()
