from simfactory._console import main

main()
