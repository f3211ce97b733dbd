from aiflow.cli.main import main

main()
