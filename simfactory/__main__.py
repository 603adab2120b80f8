from simfactory.cli.main import console

console()
