from semnet.cli.main import main

main()
