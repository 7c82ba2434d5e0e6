from segshield.cli.main import main

main()
