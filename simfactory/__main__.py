from simfactory.cli import app

app()
