from aios.cli.main import main

main()
