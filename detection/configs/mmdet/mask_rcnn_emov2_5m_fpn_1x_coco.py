# mask_rcnn with EMOv2-5M, 1x (official: mask_rcnn/mask-rcnn_emo2_5M_fpn_1x_coco.py): the 1M recipe with another backbone
_base_ = './mask_rcnn_emov2_1m_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='emov2_5m', drop_path_rate=0.05, pretrained=True),
    neck=dict(in_channels=[48, 72, 160, 288]),
)
