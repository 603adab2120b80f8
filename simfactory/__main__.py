from simfactory.cli.main import app

app()
