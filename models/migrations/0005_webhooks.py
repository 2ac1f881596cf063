from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('stagewire', '0004_rooms')]

    initial = False

    operations = [
        ops.CreateModel(
            name='WebhookEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('webhook', fields.CharField(max_length=255)),
                ('event_id', fields.CharField(max_length=32)),
                ('name', fields.CharField(max_length=32)),
                ('channel', fields.CharField(null=True, max_length=255)),
                ('payload', fields.TextField(unique=False)),
                ('state', fields.CharField(default='pending', max_length=8)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_ms', fields.BigIntField(default=0)),
                ('last_error', fields.CharField(null=True, max_length=500)),
                ('created_ms', fields.BigIntField()),
            ],
            options={'table': 'webhook_outbox', 'app': 'stagewire', 'indexes': [Index(fields=['webhook', 'state', 'id'])], 'pk_attr': 'id', 'table_description': 'Webhook events waiting to be sent, and the dead letters'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookLease',
            fields=[
                ('webhook', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=255)),
                ('owner', fields.CharField(max_length=64)),
                ('expires_ms', fields.BigIntField()),
            ],
            options={'table': 'webhook_leases', 'app': 'stagewire', 'pk_attr': 'webhook', 'table_description': "The node sending each webhook's events"},
            bases=['Model'],
        ),
    ]
